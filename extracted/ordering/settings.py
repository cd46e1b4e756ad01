"""Django settings of the extracted ordering service.

SQLite at ``$STRANGLER_DATA_DIR/ordering.sqlite3`` by default; any database URL via
``ORDERING_DATABASE_URL``. ``ORDERING_AUTH_URL`` names the monolith: callers' tokens are
checked with its ``/api/me/`` and shipping addresses with its ``/api/addresses/`` (the
customers context's API; the service never reads its tables). ``ORDERING_STAFF_TOKENS`` and
``ORDERING_SYNC_TOKEN`` (else ``CATALOG_SYNC_TOKEN``) as for the catalog.
"""

from __future__ import annotations

import os
from pathlib import Path

from extracted.servicekit import settings as kit
from extracted.servicekit.base_settings import *  # noqa: F403
from extracted.servicekit.base_settings import SHARED_APPS

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = os.environ.get("ORDERING_SECRET_KEY",
                            "ordering-service-demo-key-not-for-production")
INSTALLED_APPS = [*SHARED_APPS, "extracted.ordering"]
ROOT_URLCONF = "extracted.ordering.urls"
WSGI_APPLICATION = "extracted.ordering.wsgi.application"
DATABASES = {"default": kit.database("ORDERING", "ordering")}

SERVICE_CONTEXT = "ordering"
# The monolith's replies to the checkout saga go to the process manager, not to a table.
SERVICE_EVENT_HANDLERS = {"payments.CheckoutReply": "extracted.ordering.saga.on_reply"}
SERVICE_STAFF_TOKENS = kit.tokens("ORDERING_STAFF_TOKENS")
SERVICE_AUTH_URL = os.environ.get("ORDERING_AUTH_URL", "")
SERVICE_SYNC_TOKEN = kit.sync_token("ORDERING")
