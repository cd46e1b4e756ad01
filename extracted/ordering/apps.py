"""The one Django app of the ordering service (label ``ordering``)."""

from __future__ import annotations

from django.apps import AppConfig


class OrderingConfig(AppConfig):
    """Ordering models, API, event application and the service's own outbox."""

    name = "extracted.ordering"
    label = "ordering"
    verbose_name = "Ordering service"
    default_auto_field = "django.db.models.BigAutoField"
