"""The one Django app of the catalog service (label ``catalog``)."""

from __future__ import annotations

from django.apps import AppConfig


class CatalogConfig(AppConfig):
    """Catalog models, API, event application and the service's own outbox."""

    name = "extracted.catalog"
    label = "catalog"
    verbose_name = "Catalog service"
    default_auto_field = "django.db.models.BigAutoField"
