"""The test suite's settings: the console's own (one settings module), started the way a
developer runs it. DEBUG=true here keeps the development defaults (static files from the apps,
no HTTPS redirect) and the development SECRET_KEY; pytest-django still runs each test with
DEBUG off. Processes the tests start (a qcluster, a gunicorn) inherit these variables."""

import os

os.environ.setdefault("DEBUG", "true")

from console.settings import *  # noqa: E402, F403
