"""Settings helpers every service uses: its database from a URL, the data directory, DRF.

A service's settings module calls these with its own prefix (``CATALOG``, ``ORDERING``):
``<PREFIX>_DATABASE_URL`` (else SQLite at ``$STRANGLER_DATA_DIR/<name>.sqlite3``),
``<PREFIX>_STAFF_TOKENS``, ``<PREFIX>_AUTH_URL`` and ``<PREFIX>_SYNC_TOKEN`` (falling back to
``CATALOG_SYNC_TOKEN``, the relay's variable). A service never uses ``DATABASE_URL``: that
one belongs to the monolith.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

DEMO_SYNC_TOKEN = "strangler-demo-sync-token"  # fine on 127.0.0.1 only

# IMMEDIATE: a transaction takes the write lock at BEGIN, so concurrent appliers (relay,
# backfill) queue instead of failing on a stale read (see apply.py); WAL lets reads go on.
SQLITE_OPTIONS = {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;",
                  "transaction_mode": "IMMEDIATE"}

MIDDLEWARE = [
    "strangler.fence_refusal.FenceRefusalMiddleware",
    "strangler.shadow_rollback.ShadowRollbackMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["console"], "level": "ERROR"}},
}


def data_dir() -> Path:
    """``$STRANGLER_DATA_DIR`` (default ``./.demo``), resolved."""
    return Path(os.environ.get("STRANGLER_DATA_DIR", ".demo")).resolve()


def _make_data_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"cannot create the data directory {path} ({exc.strerror}); set "
            "STRANGLER_DATA_DIR to a writable directory"
        ) from None


def parse_url(url: str, variable: str) -> dict[str, Any]:
    """The Django DATABASES entry for ``url``; a bad URL is one line naming the variable."""
    try:
        return dict(dj_database_url.parse(url, conn_max_age=60))
    except ValueError:  # UnknownSchemeError and friends
        raise ImproperlyConfigured(
            f"{variable}={url!r} is not a database URL; use e.g. "
            "postgresql://user@host:5432/name or sqlite:///path/to/file.sqlite3"
        ) from None


def database(prefix: str, name: str) -> dict[str, object]:
    """``<prefix>_DATABASE_URL``, else SQLite at ``$STRANGLER_DATA_DIR/<name>.sqlite3``."""
    variable = f"{prefix}_DATABASE_URL"
    url = os.environ.get(variable, "")
    if url:
        config = parse_url(url, variable)
        if "sqlite" in str(config["ENGINE"]):
            config["OPTIONS"] = {**SQLITE_OPTIONS, **dict(config.get("OPTIONS") or {})}
        return config
    path = data_dir()
    _make_data_dir(path)
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path / f"{name}.sqlite3"),
        "OPTIONS": dict(SQLITE_OPTIONS),
    }


def tokens(variable: str) -> list[str]:
    """A comma-separated list of tokens from the environment."""
    return [t for t in os.environ.get(variable, "").split(",") if t]


def sync_token(prefix: str) -> str:
    """The internal endpoints' token: ``<prefix>_SYNC_TOKEN``, else the relay's variable."""
    return os.environ.get(f"{prefix}_SYNC_TOKEN") or os.environ.get(
        "CATALOG_SYNC_TOKEN", DEMO_SYNC_TOKEN)


def rest_framework() -> dict[str, Any]:
    """DRF settings matching the monolith's: token auth, page numbers, filters, JSON."""
    return {
        "DEFAULT_AUTHENTICATION_CLASSES": ["extracted.servicekit.auth.BearerTokenAuthentication"],
        "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
        "DEFAULT_PAGINATION_CLASS": "extracted.servicekit.pagination.ShopPagination",
        "PAGE_SIZE": 20,
        "DEFAULT_FILTER_BACKENDS": [
            "django_filters.rest_framework.DjangoFilterBackend",
            "rest_framework.filters.SearchFilter",
            "rest_framework.filters.OrderingFilter",
        ],
        "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
        "TEST_REQUEST_DEFAULT_FORMAT": "json",
    }
