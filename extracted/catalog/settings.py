"""Django settings of the extracted catalog service.

SQLite at ``$STRANGLER_DATA_DIR/catalog.sqlite3`` by default (``./.demo``); any database URL
via ``CATALOG_DATABASE_URL`` (its own PostgreSQL database in docker-compose). The service
never uses ``DATABASE_URL``: that one belongs to the monolith.

``CATALOG_SYNC_TOKEN`` protects the internal endpoints the relay and the backfill call
(``/internal/...``); the demo default is fine on 127.0.0.1 only. The helpers are shared with
the other services (``extracted/servicekit/settings.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

from extracted.servicekit import settings as kit
from extracted.servicekit.base_settings import *  # noqa: F403
from extracted.servicekit.base_settings import SHARED_APPS

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = os.environ.get("CATALOG_SECRET_KEY", "catalog-service-demo-key-not-for-production")
INSTALLED_APPS = [*SHARED_APPS, "extracted.catalog"]
ROOT_URLCONF = "extracted.catalog.urls"
WSGI_APPLICATION = "extracted.catalog.wsgi.application"

SQLITE_OPTIONS = kit.SQLITE_OPTIONS
DATABASES = {"default": kit.database("CATALOG", "catalog")}

# The context this service applies (a ContextSpec in extracted/sync/spec.py; also its app).
SERVICE_CONTEXT = "catalog"

# Who may write: the catalog is staff-edited, reads are public (as in the monolith).
# Staff tokens come from CATALOG_STAFF_TOKENS (comma separated) and, when CATALOG_AUTH_URL
# names the monolith, from asking its /api/me/ with the caller's token (cached briefly;
# see extracted/servicekit/auth.py): the service never reads the customers context's tables.
SERVICE_STAFF_TOKENS = kit.tokens("CATALOG_STAFF_TOKENS")
SERVICE_AUTH_URL = os.environ.get("CATALOG_AUTH_URL", "")
SERVICE_SYNC_TOKEN = kit.sync_token("CATALOG")
