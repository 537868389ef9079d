"""The console's one settings module. Every knob is an environment variable (see README)."""

import json
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from console.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_proxy_header,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent

# Off unless asked for: `make demo` and the test suite set DEBUG=true themselves.
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DEBUG is off: set SECRET_KEY (50+ random characters), "
            "or DEBUG=true for a development run."
        )
    SECRET_KEY = "insecure-development-key-set-SECRET_KEY-in-production"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# --- HTTPS (see README "Production web server") ---------------------------------------------
# On whenever DEBUG is off; HTTPS=false only for a rehearsal over plain HTTP on a closed network.
HTTPS = env_bool("HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Behind a TLS-terminating proxy: the header it sets, e.g. "X-Forwarded-Proto: https". Only set it
# when the proxy always sets (or strips) that header, or clients could claim HTTPS themselves.
SECURE_PROXY_SSL_HEADER = env_proxy_header("SECURE_PROXY_SSL_HEADER")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    # Before django_q: its `qcluster` command is the console's (migrations_app/workers.py).
    "migrations_app",
    "django_q",
    "csp",
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
    "csp.middleware.CSPMiddleware",
]

# --- Content-Security-Policy (django-csp) ------------------------------------------------------
# Our own origin only: no inline script, no inline style attributes, no third-party origin. The
# admin's own templates need neither; ours keep script in static/migrations_app/*.js and styles
# in console.css. The browser tests fail on any violation.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    },
}

# --- Error reports ----------------------------------------------------------------------------
# DATABASE_URL, every key-bearing setting and the password of any URL-shaped value are masked on
# the debug page, in error reports and in log output.
DEFAULT_EXCEPTION_REPORTER_FILTER = "console.errors.SecretsFilter"
DEFAULT_EXCEPTION_REPORTER = "console.errors.SecretsReporter"

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
# No DATABASE_URL: a SQLite file beside manage.py. SQLite, however it is configured, runs in WAL
# mode with a busy timeout and IMMEDIATE transactions, so the web server and the workers wait for
# each other instead of failing with "database is locked".
SQLITE_OPTIONS = {
    "timeout": 30,
    "transaction_mode": "IMMEDIATE",
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
        }
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {**SQLITE_OPTIONS, **DATABASES["default"].get("OPTIONS", {})}
    # W040: SQLite ignores an index's INCLUDE columns; the index still works, only PostgreSQL
    # reads the dashboard's estimate from it without the table.
    SILENCED_SYSTEM_CHECKS = ["models.W040"]
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
# How each side is reached (README "Migrating from Azure classic agents"): `bearer` sends the key
# as `Authorization: Bearer` (OpenAI's way), `api-key` in Azure's `api-key` header, `entra` a
# Microsoft Entra ID token from azure-identity's DefaultAzureCredential (no key). An API version,
# when set, is sent as `api-version=<value>` on every request (Azure's classic agents need it;
# Foundry's GA value is v1).
AUTH_METHODS = ("bearer", "api-key", "entra")
ASSISTANTS_AUTH = env_choice("ASSISTANTS_AUTH", AUTH_METHODS, "bearer")
ASSISTANTS_API_VERSION = env_str("ASSISTANTS_API_VERSION")
ASSISTANTS_ENTRA_SCOPE = env_str("ASSISTANTS_ENTRA_SCOPE", "https://ai.azure.com/.default")
OPENAI_AUTH = env_choice("OPENAI_AUTH", AUTH_METHODS, "bearer")
OPENAI_API_VERSION = env_str("OPENAI_API_VERSION")
OPENAI_ENTRA_SCOPE = env_str("OPENAI_ENTRA_SCOPE", "https://ai.azure.com/.default")
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
# transaction for half a lease (by default), releasing the row before the lease it guards runs
# out; the frozen worker finds its connection gone when it thaws and stops.
DATABASE_IDLE_TRANSACTION_SECONDS = env_int(
    "DATABASE_IDLE_TRANSACTION_SECONDS", MIGRATION_LEASE_SECONDS // 2, minimum=1
)
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = (
        f"-c idle_in_transaction_session_timeout={DATABASE_IDLE_TRANSACTION_SECONDS * 1000}"
    )
# Transient errors (network, 5xx) retried per request before the thread fails (resumable).
MIGRATION_MAX_RETRIES = env_int("MIGRATION_MAX_RETRIES", 6, minimum=0)
# Delta re-sync: check the migrated threads of live import batches for new source messages this
# often (0: only when staff ask, with "Sync new messages" or `manage.py sync_threads`).
SYNC_EVERY_MINUTES = env_int("SYNC_EVERY_MINUTES", 0, minimum=0)

# --- The applications' side (README "Lookup API for applications") ------------------------------
# A new API token's rate limit, requests per minute (each token's can be changed in the admin).
API_TOKEN_REQUESTS_PER_MINUTE = env_int("API_TOKEN_REQUESTS_PER_MINUTE", 600, minimum=1)
# The retention watchdog re-reads every migrated conversation at least once in this many days.
WATCH_DAYS = env_int("WATCH_DAYS", 30, minimum=1)

# --- Task queue -----------------------------------------------------------------------------
Q_CLUSTER: dict[str, Any] = {
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
    # django-q2's ORM broker, taking the oldest task first and able to queue one ahead of the
    # rest (a thread an application looks up: see migrations_app/broker.py).
    "broker_class": "migrations_app.broker.OrderedORM",
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
STORAGES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Uploads (README "Uploads") ---------------------------------------------------------------
# Uploaded id lists and exports wait in the default storage for the worker that imports them, and
# are removed after their import: a folder every web server and worker mounts (UPLOAD_DIR), or any
# Django storage backend, e.g. STORAGE_BACKEND=storages.backends.s3.S3Storage (django-storages)
# with STORAGE_OPTIONS='{"bucket_name": "console-uploads"}'.
UPLOAD_DIR = env_str("UPLOAD_DIR", str(BASE_DIR / "uploads"))
MEDIA_ROOT = UPLOAD_DIR
try:
    STORAGE_OPTIONS = json.loads(env_str("STORAGE_OPTIONS", "{}"))
except ValueError as error:
    raise ImproperlyConfigured(f"STORAGE_OPTIONS must be a JSON object ({error})") from None
if not isinstance(STORAGE_OPTIONS, dict):
    raise ImproperlyConfigured("STORAGE_OPTIONS must be a JSON object")
STORAGES["default"] = {
    "BACKEND": env_str("STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage"),
    "OPTIONS": STORAGE_OPTIONS,
}
MB = 1024 * 1024
# Refused on the import page before anything is read.
IMPORT_MAX_EXPORT_BYTES = env_int("IMPORT_MAX_EXPORT_MB", 1024, minimum=1) * MB
IMPORT_MAX_ID_LIST_BYTES = env_int("IMPORT_MAX_ID_LIST_MB", 50, minimum=1) * MB
# A zip export is refused whole when its members would expand past either limit (zip bombs).
IMPORT_ZIP_MAX_UNCOMPRESSED_BYTES = (
    env_int("IMPORT_ZIP_MAX_UNCOMPRESSED_MB", 20 * 1024, minimum=1) * MB
)
IMPORT_ZIP_MAX_RATIO = env_int("IMPORT_ZIP_MAX_RATIO", 100, minimum=2)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"redacted": {"()": "console.errors.RedactingFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "redacted"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "WARNING")},
}
