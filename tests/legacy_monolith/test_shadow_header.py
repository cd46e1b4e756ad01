"""``X-Strangler-Shadow: 1`` writes are validated and answered but change nothing."""

from __future__ import annotations

from typing import Any

from monolith_helpers import place_order
from rest_framework.test import APIClient

from legacy_monolith.orders.models import CartItem, Order, PaymentIntent
from legacy_monolith.store.models import Product, StockLevel

SHADOW = {"HTTP_X_STRANGLER_SHADOW": "1"}


def test_shadow_create_answers_201_but_stores_nothing(staff_client: APIClient,
                                                      shop: Any) -> None:
    payload = {"sku": "SKU-S", "name": "Shadow", "slug": "shadow",
               "category": shop.category.pk, "brand": shop.brand.pk, "price": "1.00"}
    response = staff_client.post("/api/products/", payload, **SHADOW)
    assert response.status_code == 201
    assert response.json()["sku"] == "SKU-S"
    assert response["X-Strangler-Shadow-Rolled-Back"] == "1"
    assert not Product.objects.filter(sku="SKU-S").exists()


def test_shadow_write_still_validates(staff_client: APIClient, shop: Any) -> None:
    response = staff_client.post("/api/products/", {"sku": "SKU-1"}, **SHADOW)
    assert response.status_code == 400
    assert "sku" in response.json()


def test_shadow_pay_changes_no_order_stock_or_payment(alice_client: APIClient,
                                                      shop: Any) -> None:
    order = place_order(alice_client, shop, [(shop.products[0], 2)])
    response = alice_client.post(f"/api/orders/{order['id']}/pay/", {}, **SHADOW)
    assert response.status_code == 200
    assert response.json()["status"] == "paid"
    assert Order.objects.get(pk=order["id"]).status == "pending"
    assert PaymentIntent.objects.count() == 0
    assert sum(StockLevel.objects.filter(product=shop.products[0])
               .values_list("quantity", flat=True)) == 8


def test_shadow_delete_and_cart_writes_are_undone(alice_client: APIClient,
                                                  staff_client: APIClient, shop: Any) -> None:
    assert staff_client.delete(f"/api/products/{shop.products[2].pk}/",
                               **SHADOW).status_code == 204
    assert Product.objects.filter(pk=shop.products[2].pk).exists()
    added = alice_client.post("/api/cart/items/", {"product": shop.products[1].pk}, **SHADOW)
    assert added.status_code == 201
    assert CartItem.objects.count() == 0


def test_without_the_header_writes_stick(alice_client: APIClient, shop: Any) -> None:
    alice_client.post("/api/cart/items/", {"product": shop.products[1].pk},
                      HTTP_X_STRANGLER_SHADOW="0")
    assert CartItem.objects.count() == 1
