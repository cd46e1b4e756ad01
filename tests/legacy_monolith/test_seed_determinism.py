"""The seed: same seed, same shop; a different seed, a different shop."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest

from legacy_monolith.accounts.models import User
from legacy_monolith.orders.models import Order, OrderLine, Shipment
from legacy_monolith.reviews.models import Review
from legacy_monolith.seed import SIZES, seed, token_for
from legacy_monolith.store.models import Product, StockLevel, StockReservation


def _fingerprint() -> dict[str, list[Any]]:
    return {
        "users": list(User.objects.order_by("id").values_list(
            "id", "username", "is_staff", "loyalty_tier")),
        "products": list(Product.objects.order_by("id").values_list(
            "id", "sku", "name", "price", "category__slug", "brand__slug", "is_active")),
        "tags": list(Product.tags.through.objects.order_by("id").values_list(
            "product_id", "tag__slug")),
        "stock": list(StockLevel.objects.order_by("id").values_list(
            "product_id", "warehouse__code", "quantity")),
        "orders": list(Order.objects.order_by("id").values_list(
            "id", "number", "user_id", "status", "total", "shipping_address_id")),
        "lines": list(OrderLine.objects.order_by("id").values_list(
            "order_id", "product_id", "unit_price", "quantity")),
        "reservations": list(StockReservation.objects.order_by("id").values_list(
            "stock_level_id", "order_line_id", "quantity")),
        "shipments": list(Shipment.objects.order_by("id").values_list(
            "order_id", "carrier__code", "tracking_number", "status")),
        "reviews": list(Review.objects.order_by("id").values_list(
            "product_id", "user_id", "rating", "status")),
    }


@pytest.mark.django_db
def test_same_seed_gives_the_same_shop() -> None:
    first_report = seed(SIZES["tiny"], 7)
    first = _fingerprint()
    second_report = seed(SIZES["tiny"], 7)
    assert _fingerprint() == first
    assert first_report.counts == second_report.counts
    assert first_report.tokens == {"staff": token_for(7, "staff"),
                                   "alice": token_for(7, "alice")}


@pytest.mark.django_db
def test_another_seed_gives_another_shop() -> None:
    seed(SIZES["tiny"], 7)
    first = _fingerprint()
    seed(SIZES["tiny"], 8)
    assert _fingerprint()["products"] != first["products"]


@pytest.mark.django_db
def test_small_seed_has_the_promised_size_and_consistent_numbers() -> None:
    report = seed(SIZES["small"], 42)
    assert report.counts["products"] == 200
    assert report.counts["orders"] == 300
    assert User.objects.filter(username="staff", is_staff=True).exists()
    assert User.objects.get(username="alice").check_password("alice-password")
    assert User.objects.get(username="shopper0001").check_password("shopper-password")
    numbers = Order.objects.values_list("id", "number")
    assert all(number == f"ORD-{pk:08d}" for pk, number in numbers)
    statuses = set(Order.objects.values_list("status", flat=True))
    assert statuses == {"pending", "paid", "shipped", "cancelled"}
    assert report.timings["orders"] < 30
    # orders are copied by the ordering backfill, not published one by one
    from legacy_monolith.outbox.models import OutboxEvent

    assert not OutboxEvent.objects.filter(aggregate_type__startswith="orders.").exists()


def test_large_size_meets_the_brief() -> None:
    assert SIZES["large"].products >= 10_000
    assert SIZES["large"].orders >= 50_000


@pytest.mark.django_db
def test_seed_management_command_matches_the_module() -> None:
    from django.core.management import call_command

    seed(SIZES["tiny"], 9)
    expected = _fingerprint()
    call_command("seed", "--size", "tiny", "--seed", "9", stdout=StringIO())
    assert _fingerprint() == expected
