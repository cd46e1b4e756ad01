"""The catalog's transactional outbox: every way of writing publishes, in the same transaction.

Part of the catalog extraction (docs/data-sync.md); the relay and the service are tested in
tests/extracted/.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import F
from rest_framework.test import APIClient

from legacy_monolith.common.models import Tag
from legacy_monolith.orders.models import Order
from legacy_monolith.outbox.consumer import apply_catalog_events, product_snapshot
from legacy_monolith.outbox.models import CatalogProductCopy, OutboxEvent
from legacy_monolith.outbox.publish import OutboxError
from legacy_monolith.reviews.models import Review
from legacy_monolith.store.models import (
    Brand,
    Category,
    PriceHistory,
    Product,
    ProductImage,
    ProductTag,
    StockLevel,
)
from strangler_proxy import sign_marker

pytestmark = pytest.mark.django_db


def events_since(mark: int) -> list[tuple[str, str, str, int]]:
    return [(e.aggregate_type, e.aggregate_id, e.event_type, e.sequence)
            for e in OutboxEvent.objects.filter(id__gt=mark).order_by("id")]


@pytest.fixture
def mark(shop: Any) -> int:
    return OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def test_save_publishes_full_state_with_next_sequence(shop: Any, mark: int) -> None:
    product = shop.products[1]
    product.price = Decimal("12.30")
    product.save()
    event = OutboxEvent.objects.get(id__gt=mark)
    assert (event.aggregate_type, event.aggregate_id, event.event_type, event.sequence) == (
        "store.Product", str(product.pk), "updated", 2)
    assert event.payload["price"] == "12.30"
    assert event.payload["category_id"] == shop.category.pk
    assert event.payload["updated_at"] == product.updated_at.isoformat()  # microseconds kept
    assert set(event.payload) == {"sku", "name", "slug", "description", "category_id",
                                  "brand_id", "price", "currency", "is_active", "created_at",
                                  "updated_at"}


def test_a_rolled_back_change_leaves_no_event(shop: Any, mark: int) -> None:
    with transaction.atomic():
        Brand.objects.create(name="Gone", slug="gone")
        transaction.set_rollback(True)
    assert events_since(mark) == []


def test_queryset_update_publishes_each_matching_row(shop: Any, mark: int) -> None:
    count = Product.objects.filter(pk__in=[p.pk for p in shop.products[:2]]).update(
        is_active=False)
    assert count == 2
    published = events_since(mark)
    assert [(t, k, e) for t, k, e, _ in published] == [
        ("store.Product", str(shop.products[0].pk), "updated"),
        ("store.Product", str(shop.products[1].pk), "updated")]
    assert all(e.payload["is_active"] is False for e in OutboxEvent.objects.filter(id__gt=mark))


def test_bulk_create_and_bulk_update_publish(shop: Any, mark: int) -> None:
    made = Brand.objects.bulk_create([Brand(name="B1", slug="b1"), Brand(name="B2", slug="b2")])
    for brand in made:
        brand.country = "NL"
    Brand.objects.bulk_update(made, ["country"])
    assert [(t, e, s) for t, _, e, s in events_since(mark)] == [
        ("store.Brand", "created", 1), ("store.Brand", "created", 1),
        ("store.Brand", "updated", 2), ("store.Brand", "updated", 2)]
    with pytest.raises(OutboxError, match="conflicts handling"):
        Brand.objects.bulk_create([Brand(name="B3", slug="b3")], ignore_conflicts=True)


def test_tags_add_remove_and_set_publish_the_link_rows(shop: Any, mark: int) -> None:
    product = shop.products[2]
    product.tags.add(shop.tags[0])
    product.tags.set([shop.tags[1]])
    kinds = [(t, e) for t, _, e, _ in events_since(mark)]
    assert kinds == [("store.ProductTag", "created"), ("store.ProductTag", "deleted"),
                     ("store.ProductTag", "created")]
    assert ProductTag.objects.filter(product=product).count() == 1


def test_delete_cascades_publish_every_removed_row(shop: Any, mark: int) -> None:
    product = Product.objects.create(sku="X-1", name="X", slug="x-1", category=shop.category,
                                     brand=shop.brand, price=Decimal("1.00"))
    ProductImage.objects.create(product=product, url="https://img.test/1.jpg")
    PriceHistory.objects.create(product=product, amount=Decimal("2.00"),
                                valid_from=product.created_at)
    product.tags.add(shop.tags[0])
    product.delete()
    deleted = {t for t, _, e, _ in events_since(mark) if e == "deleted"}
    assert deleted == {"store.Product", "store.ProductImage", "store.PriceHistory",
                       "store.ProductTag"}


def test_deleting_a_category_publishes_its_orphaned_children(shop: Any, mark: int) -> None:
    parent = Category.objects.create(name="P", slug="p")
    child = Category.objects.create(name="C", slug="c", parent=parent)
    Category.objects.filter(pk=parent.pk).delete()
    child_event = OutboxEvent.objects.filter(
        id__gt=mark, aggregate_id=str(child.pk), event_type="updated").get()
    assert child_event.payload["parent_id"] is None
    assert events_since(mark)[-1][2] == "deleted"


def test_stock_changes_by_f_expression_publish_the_in_stock_and_availability_facts(
        shop: Any, mark: int) -> None:
    level = StockLevel.objects.get(product=shop.products[1])
    StockLevel.objects.filter(pk=level.pk).update(quantity=F("quantity") - 10)
    published = [(e.aggregate_type, e.aggregate_id, e.payload)
                 for e in OutboxEvent.objects.filter(id__gt=mark).order_by("id")]
    assert published == [
        ("inventory.ProductStock", str(shop.products[1].pk), {"in_stock": False}),
        ("inventory.ProductAvailability", str(shop.products[1].pk), {"available": 0})]


def test_the_availability_fact_is_the_units_on_hand(shop: Any, mark: int) -> None:
    from legacy_monolith.store.actions import available_quantity

    product = shop.products[0]
    level = StockLevel.objects.filter(product=product).first()
    assert level is not None
    level.quantity += 3
    level.save()
    event = OutboxEvent.objects.get(id__gt=mark, aggregate_type="inventory.ProductAvailability")
    assert event.payload == {"available": available_quantity(product.pk)} != {"available": 0}


def test_approving_a_review_publishes_the_new_rating(shop: Any, mark: int) -> None:
    pending = Review.objects.get(status=Review.Status.PENDING)
    pending.status = Review.Status.APPROVED
    pending.save()
    event = OutboxEvent.objects.get(id__gt=mark)
    assert event.aggregate_type == "reviews.ProductRating"
    assert event.payload == {"rating": pytest.approx((4 + 5 + 1) / 3)}


def test_api_writes_publish(shop: Any, mark: int, staff_client: APIClient) -> None:
    # (the shop has no Django admin installed; an admin would save() like this API does)
    answer = staff_client.post("/api/brands/", {"name": "Api", "slug": "api"}, format="json")
    assert answer.status_code == 201
    assert events_since(mark) == [("store.Brand", str(answer.json()["id"]), "created", 1)]
    assert Tag.objects.create(name="T", slug="t").pk


def test_shadow_writes_publish_nothing(shop: Any, mark: int, staff_client: APIClient,
                                      settings: Any) -> None:
    settings.STRANGLER_SHADOW_SECRET = "s"
    answer = staff_client.post("/api/brands/", {"name": "S", "slug": "s"}, format="json",
                               HTTP_X_STRANGLER_SHADOW=sign_marker("s", "POST", "/api/brands/"))
    assert answer.status_code == 201
    assert events_since(mark) == []


def test_consumer_applies_the_owners_events_to_the_catalog_at_most_once(shop: Any) -> None:
    # given the catalog service owns the catalog (its events carry the full row)
    from legacy_monolith.outbox.models import AggregateSequence
    from legacy_monolith.outbox.publish import payload_of

    product, brand = shop.products[0], shop.brand
    last = AggregateSequence.objects.get(aggregate_type="store.Product",
                                         aggregate_id=str(product.pk)).last
    payload = dict(payload_of(product), name="Lamp", price="19.90")
    first = {"id": "e1", "position": 1, "aggregate_type": "store.Product",
             "aggregate_id": str(product.pk), "sequence": last + 1, "type": "updated",
             "payload": payload}
    second = dict(first, id="e2", position=2, sequence=last + 2,
                  payload=dict(payload, price="17.00"))
    brand_last = AggregateSequence.objects.get(aggregate_type="store.Brand",
                                               aggregate_id=str(brand.pk)).last
    other = {"id": "e3", "position": 3, "aggregate_type": "store.Brand",
             "aggregate_id": str(brand.pk), "sequence": brand_last + 1, "type": "updated",
             "payload": dict(payload_of(brand), name="Renamed")}
    mark = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    # when they are applied, and delivered again
    assert apply_catalog_events("catalog", [first, second, other], 3) == {
        "applied": 3, "duplicates": 0, "stale": 0, "position": 3}
    again = apply_catalog_events("catalog", [first, second], 3)
    # then each applied once: the monolith's own rows, its copy, its sequence counters
    assert (again["applied"], again["duplicates"]) == (0, 2)
    product.refresh_from_db()
    assert (product.name, product.price) == ("Lamp", Decimal("17.00"))
    brand.refresh_from_db()
    assert brand.name == "Renamed"
    copy = product_snapshot(product.pk)
    assert copy is not None
    assert (copy.name, copy.price, copy.sequence) == ("Lamp", Decimal("17.00"), last + 2)
    assert AggregateSequence.objects.get(aggregate_type="store.Product",
                                         aggregate_id=str(product.pk)).last == last + 2
    # and nothing was published back (no echo)
    assert events_since(mark) == []
    # and an old event is stale; a delete removes the row and the copy
    stale = dict(first, id="e5", position=5, sequence=last)
    assert apply_catalog_events("catalog", [stale], 5)["stale"] == 1
    fresh = Product.objects.create(sku="NEW", name="n", slug="n", category=shop.category,
                                   brand=brand, price=Decimal("1.00"))
    apply_catalog_events("catalog", [dict(first, id="e6", position=6, aggregate_id=str(
        fresh.pk), sequence=2, payload=payload_of(fresh))], 6)
    deleted = dict(first, id="e4", position=7, aggregate_id=str(fresh.pk), sequence=3,
                   type="deleted")
    apply_catalog_events("catalog", [deleted], 7)
    assert not Product.objects.filter(pk=fresh.pk).exists()
    assert product_snapshot(fresh.pk) is None


def test_copy_init_never_reverts_the_copy(shop: Any) -> None:
    from django.core.management import call_command

    from legacy_monolith.outbox.models import AggregateSequence

    product = shop.products[0]
    call_command("catalog_copy_init", stdout=None)
    newer = AggregateSequence.objects.get(aggregate_type="store.Product",
                                          aggregate_id=str(product.pk)).last + 5
    CatalogProductCopy.objects.filter(product_id=product.pk).update(name="From service",
                                                                    sequence=newer)
    call_command("catalog_copy_init", stdout=None)
    assert product_snapshot(product.pk).name == "From service"  # type: ignore[union-attr]


def test_consumer_endpoint_needs_the_sync_token(db: Any) -> None:
    client = APIClient()
    assert client.get("/internal/catalog-events/?stream=catalog").status_code == 403
    client.credentials(HTTP_AUTHORIZATION="Bearer strangler-demo-sync-token")
    assert client.get("/internal/catalog-events/?stream=catalog").json() == {
        "stream": "catalog", "position": 0}


@pytest.mark.django_db(transaction=True)
def test_concurrent_stock_changes_publish_the_final_fact_last(shop: Any) -> None:
    """Issue 13: two concurrent changes of one product's stock levels (PostgreSQL).

    The first transaction empties one level and stays open; the second empties the other.
    The event with the higher sequence must say what is true after both: out of stock.
    """
    import threading
    import time

    from django.db import connection, connections

    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers: no two stock transactions overlap")
    product = shop.products[0]
    levels = list(StockLevel.objects.filter(product=product).order_by("pk"))
    if len(levels) < 2:
        levels.append(StockLevel.objects.create(product=product, warehouse=shop.warehouses[1],
                                                quantity=5))
    StockLevel.objects.filter(pk__in=[x.pk for x in levels]).update(quantity=5)
    mark = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    first_saved = threading.Event()

    def empty(level_id: int, hold: float, wait: threading.Event | None) -> None:
        try:
            if wait is not None:
                wait.wait(10)
            with transaction.atomic():
                level = StockLevel.objects.get(pk=level_id)
                level.quantity = 0
                level.save()
                first_saved.set()
                time.sleep(hold)
        finally:
            connections.close_all()

    one = threading.Thread(target=empty, args=(levels[0].pk, 1.0, None))
    two = threading.Thread(target=empty, args=(levels[1].pk, 0.0, first_saved))
    one.start()
    two.start()
    one.join(30)
    two.join(30)
    facts = [(e.sequence, e.payload["in_stock"]) for e in OutboxEvent.objects.filter(
        id__gt=mark, aggregate_type="inventory.ProductStock",
        aggregate_id=str(product.pk)).order_by("sequence")]
    assert facts[-1][1] is False, facts


# -- ordering's rows (carts, orders, coupons) ---------------------------------------------------


def test_a_checkout_publishes_its_order_once_its_lines_and_the_emptied_cart(
        shop: Any, alice_client: APIClient, django_assert_num_queries: Any) -> None:
    # given a cart of two products, whose adds published the cart and its items
    mark = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    for product in shop.products[:2]:
        alice_client.post("/api/cart/items/", {"product": product.pk, "quantity": 1})
    cart = [e[:3] for e in events_since(mark)]
    assert [(t, k) for t, _, k in cart] == [
        ("orders.Cart", "created"), ("orders.CartItem", "created"),
        ("orders.CartItem", "created")]
    mark = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    ContentType.objects.clear_cache()  # the audit entry reads its content type, as when fresh
    # when it is checked out (the count pins what publishing costs, 9 of the 33 for two
    # lines: the order's sequence and event; a sequence per line and one insert of the
    # lines' events; a sequence and an event per deleted cart item; bounded by the lines)
    with django_assert_num_queries(33):
        answer = alice_client.post("/api/checkout/", {"shipping_address": shop.alice_address.pk},
                                   HTTP_X_REQUEST_ID="checkout-1")
    # then the order is published once, with its number; then its lines; then the cart's
    # items as deleted, all under the request's id
    assert answer.status_code == 201, answer.content
    order = answer.json()
    published = list(OutboxEvent.objects.filter(id__gt=mark).order_by("id"))
    assert [(e.aggregate_type, e.event_type) for e in published] == [
        ("orders.Order", "created"), ("orders.OrderLine", "created"),
        ("orders.OrderLine", "created"), ("orders.CartItem", "deleted"),
        ("orders.CartItem", "deleted")]
    assert {e.request_id for e in published} == {"checkout-1"}
    first = published[0]
    assert (first.aggregate_id, first.sequence) == (str(order["id"]), 1)
    assert first.payload["number"] == order["number"]
    stored = Order.objects.get(pk=order["id"])
    assert first.payload["updated_at"] == stored.updated_at.isoformat()  # the row as stored
    assert published[1].payload["order_id"] == order["id"]


def test_paying_and_cancelling_an_order_publish_its_status(
        shop: Any, alice_client: APIClient) -> None:
    alice_client.post("/api/cart/items/", {"product": shop.products[0].pk, "quantity": 1})
    order = alice_client.post("/api/checkout/",
                              {"shipping_address": shop.alice_address.pk}).json()
    mark = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    assert alice_client.post(f"/api/orders/{order['id']}/pay/",
                             {"method": "card"}).status_code == 200
    assert alice_client.post(f"/api/orders/{order['id']}/cancel/").status_code == 200
    statuses = [(e.sequence, e.payload["status"]) for e in OutboxEvent.objects.filter(
        id__gt=mark, aggregate_type="orders.Order").order_by("id")]
    assert statuses == [(2, "paid"), (3, "cancelled")]


def test_coupons_publish(shop: Any, mark: int, staff_client: APIClient) -> None:
    made = staff_client.post("/api/coupons/", {"code": "NEW15", "percent_off": 15})
    assert made.status_code == 201, made.content
    assert staff_client.delete(f"/api/coupons/{made.json()['id']}/").status_code == 204
    assert [e.event_type for e in OutboxEvent.objects.filter(
        id__gt=mark, aggregate_type="orders.Coupon").order_by("id")] == ["created", "deleted"]


def test_deleting_a_used_coupon_publishes_the_orders_that_lose_it(
        shop: Any, alice_client: APIClient, staff_client: APIClient) -> None:
    alice_client.post("/api/cart/items/", {"product": shop.products[0].pk, "quantity": 1})
    order = alice_client.post("/api/checkout/", {"shipping_address": shop.alice_address.pk,
                                                 "coupon": shop.coupon.code}).json()
    mark = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    assert staff_client.delete(f"/api/coupons/{shop.coupon.pk}/").status_code == 204
    published = [(e.aggregate_type, e.aggregate_id, e.event_type, e.payload.get("coupon_id"))
                 for e in OutboxEvent.objects.filter(id__gt=mark).order_by("id")]
    assert published == [("orders.Order", str(order["id"]), "updated", None),
                         ("orders.Coupon", str(shop.coupon.pk), "deleted", None)]
