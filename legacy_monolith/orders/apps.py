from __future__ import annotations

from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "legacy_monolith.orders"
    label = "orders"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Tangle: importing the signal handlers couples ordering to inventory and
        # notifications at start-up (see docs/tangles.md).
        from legacy_monolith.orders import signals  # noqa: F401
