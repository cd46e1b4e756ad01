"""Fixtures for the monolith suite: a small hand-built shop and authenticated API clients."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from monolith_helpers import place_order
from rest_framework.test import APIClient

from legacy_monolith.accounts.models import Address, User
from legacy_monolith.common.models import Tag
from legacy_monolith.orders.models import Carrier, Coupon, Order
from legacy_monolith.reviews.models import Review
from legacy_monolith.store.models import Brand, Category, Product, StockLevel, Warehouse


@dataclass
class Shop:
    """A tiny shop: 3 products (one out of stock), 2 warehouses, staff, alice and bob."""

    staff: User
    alice: User
    bob: User
    alice_address: Address
    category: Category
    brand: Brand
    products: list[Product]
    warehouses: list[Warehouse]
    carrier: Carrier
    coupon: Coupon
    tags: list[Tag]


@pytest.fixture
def shop(db: Any) -> Shop:
    staff = User.objects.create_user("staff", password="staff-password", is_staff=True)
    alice = User.objects.create_user("alice", password="alice-password", email="a@example.com")
    bob = User.objects.create_user("bob", password="bob-password")
    address = Address.objects.create(user=alice, line1="1 Main St", city="Berlin",
                                     postcode="10115", country="DE", is_default=True)
    home = Category.objects.create(name="Home", slug="home")
    acme = Brand.objects.create(name="Acme", slug="acme", country="DE")
    tags = [Tag.objects.create(name="Sale", slug="sale"), Tag.objects.create(name="New",
                                                                            slug="new")]
    products = [
        Product.objects.create(sku=f"SKU-{i}", name=f"Thing {i}", slug=f"thing-{i}",
                               category=home, brand=acme, price=Decimal(f"{i}9.99"))
        for i in range(1, 4)
    ]
    products[0].tags.set(tags)
    warehouses = [Warehouse.objects.create(code="AMS", name="Amsterdam DC", city="Amsterdam"),
                  Warehouse.objects.create(code="BER", name="Berlin DC", city="Berlin")]
    StockLevel.objects.create(product=products[0], warehouse=warehouses[0], quantity=5)
    StockLevel.objects.create(product=products[0], warehouse=warehouses[1], quantity=3)
    StockLevel.objects.create(product=products[1], warehouse=warehouses[0], quantity=10)
    StockLevel.objects.create(product=products[2], warehouse=warehouses[0], quantity=0)
    Review.objects.create(product=products[0], user=bob, rating=4, title="Good",
                          status=Review.Status.APPROVED)
    Review.objects.create(product=products[0], user=alice, rating=5, title="Great",
                          status=Review.Status.APPROVED)
    Review.objects.create(product=products[0], user=bob, rating=1, title="Spam",
                          status=Review.Status.PENDING)
    return Shop(staff, alice, bob, address, home, acme, products, warehouses,
                Carrier.objects.create(code="dhl", name="DHL"),
                Coupon.objects.create(code="SAVE10", percent_off=10), tags)


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


@pytest.fixture
def alice_client(shop: Shop) -> APIClient:
    client = APIClient()
    client.force_authenticate(shop.alice)
    return client


@pytest.fixture
def bob_client(shop: Shop) -> APIClient:
    client = APIClient()
    client.force_authenticate(shop.bob)
    return client


@pytest.fixture
def staff_client(shop: Shop) -> APIClient:
    client = APIClient()
    client.force_authenticate(shop.staff)
    return client


@pytest.fixture
def paid_order(alice_client: APIClient, shop: Shop) -> Order:
    order = place_order(alice_client, shop, [(shop.products[0], 2)])
    paid = alice_client.post(f"/api/orders/{order['id']}/pay/", {"method": "card"})
    assert paid.status_code == 200, paid.content
    return Order.objects.get(pk=order["id"])
