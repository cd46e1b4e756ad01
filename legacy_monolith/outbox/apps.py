from __future__ import annotations

from django.apps import AppConfig


class OutboxConfig(AppConfig):
    """Connects the delete receivers of the catalog models (saves publish in ``save``)."""

    name = "legacy_monolith.outbox"
    label = "outbox"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from legacy_monolith.outbox import receivers

        receivers.connect()
