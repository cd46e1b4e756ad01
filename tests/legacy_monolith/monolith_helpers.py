"""Helpers shared by the monolith tests (a unique module name: tests/ has no packages)."""

from __future__ import annotations

from typing import Any

from rest_framework.test import APIClient

from legacy_monolith.store.models import Product


def place_order(client: APIClient, shop: Any, items: list[tuple[Product, int]]) -> dict[str, Any]:
    """Fill the cart and check out through the API; returns the order JSON."""
    for product, quantity in items:
        added = client.post("/api/cart/items/", {"product": product.pk, "quantity": quantity})
        assert added.status_code == 201, added.content
    response = client.post("/api/checkout/", {"shipping_address": shop.alice_address.pk})
    assert response.status_code == 201, response.content
    return dict(response.json())
