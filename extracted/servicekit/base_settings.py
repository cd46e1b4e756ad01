"""The Django settings every extracted service shares; a service's settings module starts with
``from extracted.servicekit.base_settings import *`` and adds its own (name, apps, database,
tokens). The helpers behind them are in ``extracted/servicekit/settings.py``.
"""

from __future__ import annotations

import os

from extracted.servicekit import settings as kit

DATA_DIR = kit.data_dir()
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = ["*"]

# Every service's apps but its own: INSTALLED_APPS = [*SHARED_APPS, "extracted.<service>"].
SHARED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "rest_framework",
    "django_filters",
]

MIDDLEWARE = list(kit.MIDDLEWARE)
TEMPLATES: list[dict[str, object]] = []
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

REST_FRAMEWORK = kit.rest_framework()
LOGGING = kit.LOGGING
