"""The ordering service's API: the monolith's cart, checkout, order and coupon behaviour,
each write with its outbox events; the shared apply machinery with the ordering spec.

Runs with ``--ds=extracted.ordering.settings`` (``make test-ordering``).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from extracted.ordering.models import (
    Coupon,
    DeadLetter,
    Order,
    OutboxEvent,
    ProcessedEvent,
    Product,
    ProductAvailability,
)
from extracted.servicekit.auth import CallerIdentity

pytestmark = pytest.mark.django_db

ALICE = CallerIdentity(username="alice", is_staff=False, id=5)
BOB = CallerIdentity(username="bob", is_staff=False, id=6)
STAFF = CallerIdentity(username="staff", is_staff=True, id=1)


def client_for(caller: CallerIdentity) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=caller, token="t")  # type: ignore[arg-type]
    return client


@pytest.fixture
def products(db: None) -> list[Product]:
    made = [Product.objects.create(id=i, sku=f"SKU-{i}", name=f"Thing {i}", price=price)
            for i, price in [(1, "9.50"), (2, "19.99"), (3, "1.25")]]
    Product.objects.create(id=4, sku="SKU-4", name="Retired", price="5.00", is_active=False)
    ProductAvailability.objects.create(product_id=1, available=10)
    ProductAvailability.objects.create(product_id=2, available=1)
    ProductAvailability.objects.create(product_id=3, available=4)
    Product.objects.create(id=5, sku="SKU-5", name="Never stocked", price="2.00")
    return made


def published() -> list[tuple[str, str]]:
    return [(e.aggregate_type, e.event_type) for e in OutboxEvent.objects.order_by("id")]


def test_cart_adds_sums_and_caps_like_the_monolith(products: list[Product]) -> None:
    alice = client_for(ALICE)
    first = alice.post("/api/cart/items/", {"product": 1, "quantity": 2})
    assert first.status_code == 201
    again = alice.post("/api/cart/items/", {"product": 1, "quantity": 98}).json()
    assert [(i["product"]["sku"], i["quantity"], i["line_total"]) for i in again["items"]] == [
        ("SKU-1", 99, "940.50")]
    assert again["total"] == "940.50"
    assert alice.post("/api/cart/items/", {"product": 4}).json() == {
        "product": ['Invalid pk "4" - object does not exist.']}
    assert published() == [("orders.Cart", "created"), ("orders.CartItem", "created"),
                           ("orders.CartItem", "updated")]


def test_checkout_makes_an_order_empties_the_cart_and_publishes_each_row(
        products: list[Product]) -> None:
    alice = client_for(ALICE)
    alice.post("/api/cart/items/", {"product": 1, "quantity": 2})
    alice.post("/api/cart/items/", {"product": 3, "quantity": 4})
    Coupon.objects.create(code="TEN", percent_off=10)
    OutboxEvent.objects.all().delete()
    # when
    answer = alice.post("/api/checkout/", {"shipping_address": 7, "coupon": "TEN"})
    # then
    assert answer.status_code == 201, answer.json()
    order = answer.json()
    assert order["number"] == f"ORD-{order['id']:08d}"
    assert (order["user"], order["status"], order["shipping_address"], order["total"],
            order["coupon"]) == (5, "pending", 7, "21.60", "TEN")
    assert [(x["product"]["id"], x["unit_price"], x["quantity"]) for x in order["lines"]] == [
        (1, "9.50", 2), (3, "1.25", 4)]
    assert alice.get("/api/cart/").json()["items"] == []
    assert published() == [("orders.Order", "created"), ("orders.OrderLine", "created"),
                           ("orders.OrderLine", "created"), ("orders.CartItem", "deleted"),
                           ("orders.CartItem", "deleted")]


@pytest.mark.parametrize(("cart", "body", "error"), [
    ([], {"shipping_address": 1}, {"cart": ["The cart is empty."]}),
    ([(2, 2)], {"shipping_address": 1}, {"items": ["Out of stock: SKU-2."]}),
    ([(3, 5), (5, 1)], {"shipping_address": 1}, {"items": ["Out of stock: SKU-3, SKU-5."]}),
    ([(1, 1)], {"shipping_address": 1, "coupon": "NOPE"},
     {"coupon": ["Unknown or inactive coupon 'NOPE'."]}),
    ([(1, 1)], {}, {"shipping_address": ["This field is required."]}),
])
def test_checkout_refuses_like_the_monolith(products: list[Product], cart: list[Any],
                                            body: dict[str, Any], error: Any) -> None:
    alice = client_for(ALICE)
    for product, quantity in cart:
        alice.post("/api/cart/items/", {"product": product, "quantity": quantity})
    answer = alice.post("/api/checkout/", body)
    assert (answer.status_code, answer.json()) == (400, error)
    assert not Order.objects.exists()


def test_orders_are_the_callers_staff_see_all_and_cancel_twice_is_409(
        products: list[Product], django_assert_num_queries: Any) -> None:
    alice, bob, staff = client_for(ALICE), client_for(BOB), client_for(STAFF)
    alice.post("/api/cart/items/", {"product": 1})
    order = alice.post("/api/checkout/", {"shipping_address": 7}).json()
    assert bob.get(f"/api/orders/{order['id']}/").status_code == 404
    assert bob.get("/api/orders/").json()["count"] == 0
    assert staff.get("/api/orders/?user=5").json()["count"] == 1
    with django_assert_num_queries(4):  # count, orders+coupon, lines, products: no N+1
        assert alice.get("/api/orders/").json()["results"][0]["id"] == order["id"]
    cancelled = alice.post(f"/api/orders/{order['id']}/cancel/")
    assert cancelled.json()["status"] == "cancelled"
    again = alice.post(f"/api/orders/{order['id']}/cancel/")
    assert (again.status_code, again.json()) == (409, {
        "detail": f"Order {order['number']} is cancelled; it can no longer be cancelled."})
    # ship is the shipping context's: not served here
    assert alice.post(f"/api/orders/{order['id']}/ship/").status_code == 404


def test_coupons_are_staff_only_and_codes_unique(products: list[Product]) -> None:
    staff, alice = client_for(STAFF), client_for(ALICE)
    assert alice.get("/api/coupons/").status_code == 403
    assert APIClient().get("/api/coupons/").status_code == 401
    assert staff.post("/api/coupons/", {"code": "X", "percent_off": 5}).status_code == 201
    assert staff.post("/api/coupons/", {"code": "X", "percent_off": 500}).json() == {
        "code": ["coupon with this code already exists."],
        "percent_off": ["Ensure this value is less than or equal to 100."]}


def test_a_token_without_a_user_has_no_cart(products: list[Product], staff: APIClient) -> None:
    # the `staff` fixture's key is a service-local staff token (SERVICE_STAFF_TOKENS)
    answer = staff.get("/api/cart/")
    assert answer.status_code == 403
    assert "names no user" in answer.json()["detail"]


def _event(kind: str, key: int, sequence: int, position: int,
           payload: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "position": position, "aggregate_type": kind,
            "aggregate_id": str(key), "sequence": sequence, "type": "updated",
            "payload": payload, "occurred_at": "2026-12-05T10:00:00Z"}


def test_the_shared_apply_follows_products_and_ignores_the_rest_of_the_catalog(
        products: list[Product], sync: APIClient) -> None:
    renamed = {"sku": "SKU-1", "name": "Blue mug", "slug": "blue-mug", "price": "11.00",
               "is_active": True, "description": "", "category_id": 1, "brand_id": 1,
               "currency": "EUR", "created_at": "2026-12-05T10:00:00Z",
               "updated_at": "2026-12-05T10:00:00Z"}
    events = [_event("store.Product", 1, 1, 1, renamed),
              _event("store.Brand", 3, 1, 2, {"name": "B", "slug": "b", "country": ""}),
              _event("reviews.ProductRating", 1, 1, 3, {"rating": 4.5}),
              _event("orders.Payment", 1, 1, 4, {})]
    answer = sync.post("/internal/events/", {"stream": "monolith", "events": events},
                       format="json")
    assert answer.json() == {"applied": 1, "duplicates": 0, "stale": 0, "position": 4,
                             "dead_letters": 1, "ignored": 2}
    assert Product.objects.get(pk=1).price == Decimal("11.00")
    assert sorted(ProcessedEvent.objects.values_list("outcome", flat=True)) == [
        "applied", "dead_letter", "ignored", "ignored"]
    # a type nobody declared is still a dead letter, not silence (contract 5)
    assert "not part of the ordering context" in DeadLetter.objects.get().reason


def test_the_monolith_s_availability_events_keep_checkout_s_pre_check_current(
        products: list[Product], sync: APIClient) -> None:
    # given product 2 with 1 unit on hand, then the monolith's stock rises to 5 (an event)
    alice = client_for(ALICE)
    alice.post("/api/cart/items/", {"product": 2, "quantity": 3})
    event = _event("inventory.ProductAvailability", 2, 1, 1, {"available": 5})
    answer = sync.post("/internal/events/", {"stream": "monolith", "events": [event]},
                       format="json")
    assert answer.json()["applied"] == 1, answer.json()
    # then the service's copy follows, and a cart of 3 passes checkout's stock check
    assert ProductAvailability.objects.get(product_id=2).available == 5
    assert alice.post("/api/checkout/", {"shipping_address": 7}).status_code == 201
