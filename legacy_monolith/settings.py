"""Django settings of the demo shop.

SQLite at ``$STRANGLER_DATA_DIR/monolith.sqlite3`` by default (``./.demo``); PostgreSQL when
``DATABASE_URL`` is set. ``STRANGLER_QUERY_LOG=path.jsonl`` switches on the query-capture
middleware (see docs/query-log-format.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent
DATA_DIR = Path(os.environ.get("STRANGLER_DATA_DIR", ".demo")).resolve()

# A demo shop: the key is not a secret, but can be overridden like in production.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "legacy-monolith-demo-key-not-for-production")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets served from the package: works offline
    "legacy_monolith.common",
    "legacy_monolith.accounts",
    "legacy_monolith.store",
    "legacy_monolith.orders",
    "legacy_monolith.reviews",
    "legacy_monolith.notifications",
    "legacy_monolith.outbox",
]

MIDDLEWARE = [
    "legacy_monolith.query_log.QueryCaptureMiddleware",
    "strangler.fence_refusal.FenceRefusalMiddleware",
    "strangler.shadow_rollback.ShadowRollbackMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "legacy_monolith.urls"
WSGI_APPLICATION = "legacy_monolith.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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


def _make_data_dir() -> None:
    try:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"cannot create the data directory {DATA_DIR} ({exc.strerror}); set "
            "STRANGLER_DATA_DIR to a writable directory"
        ) from None


def _parse_url(url: str, variable: str) -> dict[str, object]:
    """The Django DATABASES entry for ``url``; a bad URL is one line naming the variable."""
    try:
        return dict(dj_database_url.parse(url, conn_max_age=60))
    except ValueError:  # UnknownSchemeError and friends
        raise ImproperlyConfigured(
            f"{variable}={url!r} is not a database URL; use e.g. "
            "postgresql://user@host:5432/name or sqlite:///path/to/file.sqlite3"
        ) from None


def _database() -> dict[str, object]:
    url = os.environ.get("DATABASE_URL", "")
    if url:
        return _parse_url(url, "DATABASE_URL")
    _make_data_dir()
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(DATA_DIR / "monolith.sqlite3"),
        "CONN_MAX_AGE": 60,  # one connection per worker, not one (and its PRAGMAs) per request
        # IMMEDIATE: take the write lock at BEGIN, so two gunicorn workers queue for it
        # (busy timeout) instead of failing with "database is locked" on lock upgrade.
        "OPTIONS": {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
# Fast hashing: this is a demo whose seed creates thousands of users.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.MD5PasswordHasher",
]
if os.environ.get("STRANGLER_FAST_HASHER", "1") == "1":
    PASSWORD_HASHERS.insert(0, PASSWORD_HASHERS.pop())

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "legacy_monolith.common.pagination.ShopPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Legacy shop API",
    "DESCRIPTION": "The demo monolith the strangler toolkit migrates.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Query capture (contract 4): off unless set. A path to a JSON Lines file.
STRANGLER_QUERY_LOG = os.environ.get("STRANGLER_QUERY_LOG", "")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["console"], "level": "ERROR"}},
}
