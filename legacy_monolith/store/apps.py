from __future__ import annotations

from django.apps import AppConfig


class StoreConfig(AppConfig):
    name = "legacy_monolith.store"
    label = "store"
    default_auto_field = "django.db.models.BigAutoField"
