"""ASGI entry point (the demo serves WSGI with gunicorn; this is for ASGI servers)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "legacy_monolith.settings")
application = get_asgi_application()
