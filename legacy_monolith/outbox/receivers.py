"""Delete receivers: the collector sends them inside its transaction, cascades included."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.db.models import SET_NULL
from django.db.models.signals import post_delete, pre_delete

from legacy_monolith.outbox.publish import DERIVED, PUBLISHED, publishes, record, record_rows


def _deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    record(instance, "deleted")


def _set_null_children(sender: Any, instance: Any, **kwargs: Any) -> None:
    # on_delete=SET_NULL updates the children without signals (a deleted category's
    # subcategories, a deleted coupon's orders): publish them as updated.
    for relation in sender._meta.related_objects:
        child = relation.related_model
        if relation.on_delete is not SET_NULL or not publishes(child):
            continue
        column = relation.field.attname
        rows = list(child._base_manager.filter(**{column: instance.pk}))
        for row in rows:
            setattr(row, column, None)
        record_rows(child, rows, "updated")


def connect() -> None:
    """Connect the delete receivers of every publishing model (once)."""
    for label in sorted(PUBLISHED | set(DERIVED)):
        model = apps.get_model(label)
        post_delete.connect(_deleted, sender=model, dispatch_uid=f"outbox-delete-{label}")
        pre_delete.connect(_set_null_children, sender=model,
                           dispatch_uid=f"outbox-set-null-{label}")
