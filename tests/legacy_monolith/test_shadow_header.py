"""Writes with a signed ``X-Strangler-Shadow`` marker are validated and answered but change
nothing; unsigned, forged or stale markers are ignored (the write is real)."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from monolith_helpers import place_order
from rest_framework.test import APIClient

from legacy_monolith.orders.models import CartItem, Order, PaymentIntent
from legacy_monolith.store.models import Product, StockLevel
from strangler_proxy import sign_marker

SECRET = "test-marker-secret"


@pytest.fixture(autouse=True)
def _marker_secret(settings: Any) -> None:
    settings.STRANGLER_SHADOW_SECRET = SECRET


def shadow(method: str, path: str, secret: str = SECRET, at: float | None = None,
           ) -> dict[str, str]:
    """The signed marker the proxy puts on a copy of ``method path``."""
    return {"HTTP_X_STRANGLER_SHADOW": sign_marker(secret, method, path, at)}


def test_shadow_create_answers_201_but_stores_nothing(staff_client: APIClient,
                                                      shop: Any) -> None:
    payload = {"sku": "SKU-S", "name": "Shadow", "slug": "shadow",
               "category": shop.category.pk, "brand": shop.brand.pk, "price": "1.00"}
    response = staff_client.post("/api/products/", payload, **shadow("POST", "/api/products/"))
    assert response.status_code == 201
    assert response.json()["sku"] == "SKU-S"
    assert response["X-Strangler-Shadow-Rolled-Back"] == "1"
    assert not Product.objects.filter(sku="SKU-S").exists()


def test_shadow_write_still_validates(staff_client: APIClient, shop: Any) -> None:
    response = staff_client.post("/api/products/", {"sku": "SKU-1"},
                                 **shadow("POST", "/api/products/"))
    assert response.status_code == 400
    assert "sku" in response.json()


def test_shadow_pay_changes_no_order_stock_or_payment(alice_client: APIClient,
                                                      shop: Any) -> None:
    order = place_order(alice_client, shop, [(shop.products[0], 2)])
    path = f"/api/orders/{order['id']}/pay/"
    response = alice_client.post(path, {}, **shadow("POST", path))
    assert response.status_code == 200
    assert response.json()["status"] == "paid"
    assert Order.objects.get(pk=order["id"]).status == "pending"
    assert PaymentIntent.objects.count() == 0
    assert sum(StockLevel.objects.filter(product=shop.products[0])
               .values_list("quantity", flat=True)) == 8


def test_shadow_delete_and_cart_writes_are_undone(alice_client: APIClient,
                                                  staff_client: APIClient, shop: Any) -> None:
    path = f"/api/products/{shop.products[2].pk}/"
    assert staff_client.delete(path, **shadow("DELETE", path)).status_code == 204
    assert Product.objects.filter(pk=shop.products[2].pk).exists()
    added = alice_client.post("/api/cart/items/", {"product": shop.products[1].pk},
                              **shadow("POST", "/api/cart/items/"))
    assert added.status_code == 201
    assert CartItem.objects.count() == 0


def test_a_shadowed_read_that_writes_stores_nothing(alice_client: APIClient,
                                                   shop: Any) -> None:
    # GET /api/cart/ creates the cart on the first look: a copy of it must not, or the
    # service allocates a cart of its own beside the monolith's (two rows, one id)
    from legacy_monolith.orders.models import Cart

    before = Cart.objects.count()
    response = alice_client.get("/api/cart/", **shadow("GET", "/api/cart/"))
    assert response.status_code == 200
    assert response["X-Strangler-Shadow-Rolled-Back"] == "1"
    assert Cart.objects.count() == before
    assert alice_client.get("/api/cart/").status_code == 200  # a real read still does
    assert Cart.objects.count() == before + 1


def test_without_the_header_writes_stick(alice_client: APIClient, shop: Any) -> None:
    alice_client.post("/api/cart/items/", {"product": shop.products[1].pk},
                      HTTP_X_STRANGLER_SHADOW="0")
    assert CartItem.objects.count() == 1


@pytest.mark.parametrize("marker", [
    {"HTTP_X_STRANGLER_SHADOW": "1"},  # what a client could always send
    shadow("POST", "/api/cart/items/", secret="guessed"),  # forged
    shadow("POST", "/api/other/"),  # signed for another path
    shadow("POST", "/api/cart/items/", at=time.time() - 3600),  # stale
], ids=["unsigned", "forged", "other-path", "stale"])
def test_a_marker_that_is_not_validly_signed_is_ignored_and_logged(
        alice_client: APIClient, shop: Any, marker: dict[str, str],
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="strangler.shadow_marker"):
        added = alice_client.post("/api/cart/items/", {"product": shop.products[1].pk},
                                  **marker)
    assert added.status_code == 201
    assert "X-Strangler-Shadow-Rolled-Back" not in added
    assert CartItem.objects.count() == 1  # a real write
    assert "ignored X-Strangler-Shadow" in caplog.text


def test_without_a_secret_no_marker_is_honoured(alice_client: APIClient, shop: Any,
                                                settings: Any) -> None:
    settings.STRANGLER_SHADOW_SECRET = None
    alice_client.post("/api/cart/items/", {"product": shop.products[1].pk},
                      **shadow("POST", "/api/cart/items/"))
    assert CartItem.objects.count() == 1
