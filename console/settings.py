"""The console's one settings module. Every knob is an environment variable (see README)."""

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from console.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is off")
    SECRET_KEY = "insecure-development-key-set-SECRET_KEY-in-production"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_q",
    "migrations_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "console.urls"
WSGI_APPLICATION = "console.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# No DATABASE_URL: a SQLite file beside manage.py, in WAL mode with a busy timeout so the demo's
# web server and workers wait for each other instead of failing with "database is locked".
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- APIs -----------------------------------------------------------------------------------
# No OPENAI_API_KEY: both source and destination are the built-in sandbox on loopback.
SANDBOX_HOST = "127.0.0.1"
SANDBOX_PORT = env_int("SANDBOX_PORT", 8001, minimum=1)
SANDBOX_URL = f"http://{SANDBOX_HOST}:{SANDBOX_PORT}/v1"
OPENAI_API_KEY = env_str("OPENAI_API_KEY")
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL")
ASSISTANTS_API_KEY = env_str("ASSISTANTS_API_KEY", OPENAI_API_KEY)
ASSISTANTS_BASE_URL = env_str("ASSISTANTS_BASE_URL", OPENAI_BASE_URL)
API_TIMEOUT_SECONDS = env_float("API_TIMEOUT_SECONDS", 60.0, minimum=1)
API_REQUESTS_PER_MINUTE = env_int("API_REQUESTS_PER_MINUTE", 3000, minimum=1)
# The source's own budget (often another API with another limit); every read from it is paced.
ASSISTANTS_REQUESTS_PER_MINUTE = env_int("ASSISTANTS_REQUESTS_PER_MINUTE", 3000, minimum=1)

# --- Conversion (DESIGN.md "Conversion rules") --------------------------------------------------
MIGRATE_TOOL_CALLS = env_bool("MIGRATE_TOOL_CALLS", True)
MIGRATE_ATTACHMENTS = env_bool("MIGRATE_ATTACHMENTS", True)

# --- The migration engine (see README "Workers and tuning") -------------------------------------
# Threads in flight per worker process: the work waits on the network, not the CPU.
MIGRATION_THREADS_PER_WORKER = env_int("MIGRATION_THREADS_PER_WORKER", 16, minimum=1)
# Threads per queued task: one task runs its group with the threads above.
MIGRATION_TASK_GROUP_SIZE = env_int("MIGRATION_TASK_GROUP_SIZE", 8, minimum=1)
# A worker silent this long is presumed dead; the sweeper hands its thread to another.
MIGRATION_LEASE_SECONDS = env_int("MIGRATION_LEASE_SECONDS", 300, minimum=5)
# A worker can freeze anywhere, inside a transaction too, where it would hold its thread's row
# (the sweeper passes over held rows) until it thaws: PostgreSQL ends a session that idles in a
# transaction for half a lease, releasing the row before the lease it guards runs out.
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = (
        f"-c idle_in_transaction_session_timeout={MIGRATION_LEASE_SECONDS * 500}"
    )
# Transient errors (network, 5xx) retried per request before the thread fails (resumable).
MIGRATION_MAX_RETRIES = env_int("MIGRATION_MAX_RETRIES", 6, minimum=0)

# --- Task queue -----------------------------------------------------------------------------
Q_CLUSTER = {
    "name": "console",
    "orm": "default",
    "workers": env_int("Q_WORKERS", 2, minimum=1),
    "timeout": env_int("Q_TIMEOUT", 600, minimum=10),
    "retry": env_int("Q_RETRY", 720, minimum=20),
    "max_attempts": 1,
    "poll": 0.5,
    "catch_up": False,
    "save_limit": 10000,
    "ack_failures": True,
    "label": "Task queue",
}

# --- Auth, i18n, static ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "admin:login"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Uploaded id lists and exports wait here for the worker that imports them.
UPLOAD_DIR = env_str("UPLOAD_DIR", str(BASE_DIR / "uploads"))
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "WARNING")},
}
