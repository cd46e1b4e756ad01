"""Delete receivers: the collector sends them inside its transaction, cascades included."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.db.models.signals import post_delete, pre_delete

from legacy_monolith.outbox.publish import DERIVED, PUBLISHED, record, record_rows


def _deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    record(instance, "deleted")


def _orphaned_children(sender: Any, instance: Any, **kwargs: Any) -> None:
    # on_delete=SET_NULL updates the children without signals: publish them as updated.
    children = list(sender._base_manager.filter(parent_id=instance.pk))
    for child in children:
        child.parent_id = None
    record_rows(sender, children, "updated")


def _uncouponed_orders(sender: Any, instance: Any, **kwargs: Any) -> None:
    # Order.coupon is SET_NULL too: the orders that used a deleted coupon, published as updated.
    order = apps.get_model("orders.Order")
    orders = list(order._base_manager.filter(coupon_id=instance.pk))
    for row in orders:
        row.coupon_id = None
    record_rows(order, orders, "updated")


def connect() -> None:
    """Connect a ``post_delete`` receiver for every publishing model (once)."""
    for label in sorted(PUBLISHED | set(DERIVED)):
        model = apps.get_model(label)
        post_delete.connect(_deleted, sender=model, dispatch_uid=f"outbox-delete-{label}")
    category = apps.get_model("store.Category")
    pre_delete.connect(_orphaned_children, sender=category, dispatch_uid="outbox-category-kids")
    pre_delete.connect(_uncouponed_orders, sender=apps.get_model("orders.Coupon"),
                       dispatch_uid="outbox-coupon-orders")
