"""Django settings of the extracted catalog service.

SQLite at ``$STRANGLER_DATA_DIR/catalog.sqlite3`` by default (``./.demo``); any database URL
via ``CATALOG_DATABASE_URL`` (its own PostgreSQL database in docker-compose). The service
never uses ``DATABASE_URL``: that one belongs to the monolith.

``CATALOG_SYNC_TOKEN`` protects the internal endpoints the relay and the backfill call
(``/internal/...``); the demo default is fine on 127.0.0.1 only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent
DATA_DIR = Path(os.environ.get("STRANGLER_DATA_DIR", ".demo")).resolve()

SECRET_KEY = os.environ.get("CATALOG_SECRET_KEY", "catalog-service-demo-key-not-for-production")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "rest_framework",
    "django_filters",
    "extracted.catalog",
]

MIDDLEWARE = [
    "strangler.fence_refusal.FenceRefusalMiddleware",
    "strangler.shadow_rollback.ShadowRollbackMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "extracted.catalog.urls"
WSGI_APPLICATION = "extracted.catalog.wsgi.application"
TEMPLATES: list[dict[str, object]] = []


# IMMEDIATE: a transaction takes the write lock at BEGIN, so concurrent appliers (relay,
# backfill) queue instead of failing on a stale read (see apply.py); WAL lets reads go on.
SQLITE_OPTIONS = {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;",
                  "transaction_mode": "IMMEDIATE"}


def _make_data_dir() -> None:
    try:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"cannot create the data directory {DATA_DIR} ({exc.strerror}); set "
            "STRANGLER_DATA_DIR to a writable directory"
        ) from None


def _parse_url(url: str, variable: str) -> dict[str, Any]:
    """The Django DATABASES entry for ``url``; a bad URL is one line naming the variable."""
    try:
        return dict(dj_database_url.parse(url, conn_max_age=60))
    except ValueError:  # UnknownSchemeError and friends
        raise ImproperlyConfigured(
            f"{variable}={url!r} is not a database URL; use e.g. "
            "postgresql://user@host:5432/name or sqlite:///path/to/file.sqlite3"
        ) from None


def _database() -> dict[str, object]:
    url = os.environ.get("CATALOG_DATABASE_URL", "")
    if url:
        config = _parse_url(url, "CATALOG_DATABASE_URL")
        if "sqlite" in str(config["ENGINE"]):
            config["OPTIONS"] = {**SQLITE_OPTIONS, **dict(config.get("OPTIONS") or {})}
        return config
    _make_data_dir()
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(DATA_DIR / "catalog.sqlite3"),
        "OPTIONS": dict(SQLITE_OPTIONS),
    }


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# Who may write: the catalog is staff-edited, reads are public (as in the monolith).
# Staff tokens come from CATALOG_STAFF_TOKENS (comma separated) and, when CATALOG_AUTH_URL
# names the monolith, from asking its /api/me/ with the caller's token (cached briefly;
# see extracted/catalog/auth.py): the service never reads the customers context's tables.
CATALOG_STAFF_TOKENS = [t for t in os.environ.get("CATALOG_STAFF_TOKENS", "").split(",") if t]
CATALOG_AUTH_URL = os.environ.get("CATALOG_AUTH_URL", "")
CATALOG_SYNC_TOKEN = os.environ.get("CATALOG_SYNC_TOKEN", "strangler-demo-sync-token")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["extracted.catalog.auth.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "extracted.catalog.pagination.CatalogPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["console"], "level": "ERROR"}},
}
