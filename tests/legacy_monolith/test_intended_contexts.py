"""intended_contexts.json names every concrete model of the shop, and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

from django.apps import apps
from django.conf import settings

CONTEXTS = {"catalog", "inventory", "customers", "ordering", "payments", "shipping", "reviews",
            "notifications", "shared"}
SHOP_APPS = {"common", "accounts", "store", "orders", "reviews", "notifications"}


def _intended() -> dict[str, object]:
    path = Path(settings.BASE_DIR) / "intended_contexts.json"
    return dict(json.loads(path.read_text()))


def test_every_concrete_model_has_exactly_one_context() -> None:
    data = _intended()
    assert data["schema_version"] == 1
    mapping = data["models"]
    assert isinstance(mapping, dict)
    models = {f"{m._meta.app_label}.{m.__name__}" for m in apps.get_models()
              if m._meta.app_label in SHOP_APPS}
    assert set(mapping) == models
    assert set(mapping.values()) == CONTEXTS
    assert len(models) >= 25


def test_the_tangles_are_in_the_mapping() -> None:
    mapping = _intended()["models"]
    assert isinstance(mapping, dict)
    assert {mapping["store.Product"], mapping["store.StockLevel"]} == {"catalog", "inventory"}
    assert mapping["orders.PaymentIntent"] == "payments"
    assert mapping["orders.Shipment"] == "shipping"
    assert mapping["accounts.User"] == "customers"
    assert mapping["common.Tag"] == "shared"
