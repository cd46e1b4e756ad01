"""Inventory side effects: reserve, release and move stock (called from orders' signals)."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F, Sum

from legacy_monolith.common.errors import Conflict
from legacy_monolith.store.models import Product, StockLevel, StockMovement, StockReservation


class OutOfStock(Conflict):
    default_detail = "Not enough stock."
    default_code = "out_of_stock"


def available_quantity(product_id: int) -> int:
    """Units of a product on hand across all warehouses."""
    total = StockLevel.objects.filter(product_id=product_id, quantity__gt=0).aggregate(
        total=Sum("quantity")
    )["total"]
    return int(total or 0)


@transaction.atomic
def reserve_stock(
    product: Product, quantity: int, order_line_id: int | None = None, reason: str = "reserve"
) -> list[StockReservation]:
    """Take ``quantity`` units from the fullest warehouses first; all or nothing.

    Raises OutOfStock (409) when the warehouses together hold fewer units.
    """
    levels = list(
        StockLevel.objects.select_for_update()
        .filter(product=product, quantity__gt=0)
        .order_by("-quantity", "id")
    )
    if sum(level.quantity for level in levels) < quantity:
        raise OutOfStock(f"Not enough stock for {product.sku}: {quantity} requested.")
    reservations: list[StockReservation] = []
    remaining = quantity
    for level in levels:
        if remaining == 0:
            break
        take = min(level.quantity, remaining)
        remaining -= take
        StockLevel.objects.filter(pk=level.pk).update(quantity=F("quantity") - take)
        StockMovement.objects.create(stock_level=level, delta=-take, reason=reason)
        reservations.append(
            StockReservation.objects.create(
                stock_level=level, order_line_id=order_line_id, quantity=take
            )
        )
    return reservations


@transaction.atomic
def release_reservations(reservations: list[StockReservation], reason: str = "release") -> int:
    """Put reserved units back on the shelf; returns the number of units released."""
    released = 0
    for reservation in reservations:
        if reservation.released:
            continue
        StockLevel.objects.filter(pk=reservation.stock_level_id).update(
            quantity=F("quantity") + reservation.quantity
        )
        StockMovement.objects.create(
            stock_level_id=reservation.stock_level_id, delta=reservation.quantity, reason=reason
        )
        reservation.released = True
        reservation.save(update_fields=["released"])
        released += reservation.quantity
    return released
