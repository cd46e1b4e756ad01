"""The coupling everyone fears: an order's status change reaches into three other domains.

paid      -> inventory (reserve stock per line) -> notifications (queue email)
          -> customers (loyalty points)
cancelled -> inventory (release reservations) -> notifications
shipped   -> notifications
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from legacy_monolith.accounts.models import LoyaltyAccount, LoyaltyTransaction
from legacy_monolith.notifications import actions as notifications
from legacy_monolith.orders.models import Order
from legacy_monolith.store import actions as inventory
from legacy_monolith.store.models import StockReservation


@receiver(pre_save, sender=Order)
def remember_status(sender: type[Order], instance: Order, **kwargs: Any) -> None:
    """Keep the stored status so post_save can see the transition."""
    if instance.pk is None:
        instance._previous_status = None  # type: ignore[attr-defined]
        return
    instance._previous_status = (  # type: ignore[attr-defined]
        Order.objects.filter(pk=instance.pk).values_list("status", flat=True).first()
    )


@receiver(post_save, sender=Order)
def on_status_change(sender: type[Order], instance: Order, **kwargs: Any) -> None:
    previous = getattr(instance, "_previous_status", None)
    if previous == instance.status:
        return
    if instance.status == Order.Status.PAID:
        _reserve_lines(instance)
        _award_points(instance)
        notifications.send(instance.user, "order_paid", instance)
    elif instance.status == Order.Status.CANCELLED:
        reservations = list(StockReservation.objects.filter(order_line__order=instance))
        inventory.release_reservations(reservations, reason="order cancelled")
        notifications.send(instance.user, "order_cancelled", instance)
    elif instance.status == Order.Status.SHIPPED:
        notifications.send(instance.user, "order_shipped", instance)


def _reserve_lines(order: Order) -> None:
    for line in order.lines.select_related("product"):
        inventory.reserve_stock(line.product, line.quantity, order_line_id=line.pk,
                                reason=f"order {order.number}")


def _award_points(order: Order) -> None:
    account, _ = LoyaltyAccount.objects.get_or_create(user=order.user)
    points = int(order.total)
    LoyaltyTransaction.objects.create(
        account=account, order=order, points=points, reason="order paid"
    )
    LoyaltyAccount.objects.filter(pk=account.pk).update(points=account.points + points)
