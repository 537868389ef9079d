"""The test suite's settings: the console's own (one settings module), started the way a
developer runs it. DEBUG=true here keeps the development defaults (static files from the apps,
no HTTPS redirect) and the development SECRET_KEY; pytest-django still runs each test with
DEBUG off. Processes the tests start (a qcluster, a gunicorn) inherit these variables."""

import os

os.environ.setdefault("DEBUG", "true")

from console.settings import *  # noqa: F403

# Hashing a test password with the production hasher costs ~0.3 s per user created.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
