"""A sweep over the OpenAPI schema: every GET endpoint answers 200 to the right user, so a
new endpoint cannot ship without at least a happy path here."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from legacy_monolith.notifications.models import EmailTemplate, OutboundMessage
from legacy_monolith.orders.models import Order, PaymentIntent, Refund, Shipment
from legacy_monolith.reviews.models import Review
from legacy_monolith.store.models import StockLevel, StockMovement

STAFF_ONLY = ("warehouses", "stock-levels", "stock-movements", "refunds", "coupons",
              "reports", "notifications/templates")


def _ids(shop: Any, order: Order) -> dict[str, int]:
    intent = PaymentIntent.objects.get(order=order)
    return {
        "products": shop.products[0].pk, "categories": shop.category.pk,
        "brands": shop.brand.pk, "tags": shop.tags[0].pk,
        "warehouses": shop.warehouses[0].pk, "stock-levels": StockLevel.objects.first().pk,
        "stock-movements": StockMovement.objects.first().pk, "orders": order.pk,
        "payments": intent.pk,
        "refunds": Refund.objects.create(payment_intent=intent, amount=1, reason="t").pk,
        "coupons": shop.coupon.pk, "carriers": shop.carrier.pk,
        "shipments": Shipment.objects.get().pk,
        "reviews": Review.objects.filter(status="approved").first().pk,
        "addresses": shop.alice_address.pk,
        "notifications/messages": OutboundMessage.objects.filter(user=shop.alice).first().pk,
        "notifications/templates": EmailTemplate.objects.first().pk,
    }


def _resource(path: str) -> str:
    rest = path.removeprefix("/api/").split("/{")[0].rstrip("/")
    return "notifications/" + rest.split("/")[1] if rest.startswith("notifications/") \
        else rest.split("/")[0]


@pytest.mark.django_db
def test_every_get_endpoint_answers_200(shop: Any, paid_order: Order,
                                        alice_client: APIClient,
                                        staff_client: APIClient) -> None:
    assert staff_client.post(f"/api/orders/{paid_order.pk}/ship/",
                             {"carrier": "dhl"}).status_code == 201
    schema = json.loads(Client().get("/api/schema/?format=json").content)
    ids = _ids(shop, paid_order)
    checked = []
    for path, operations in schema["paths"].items():
        if "get" not in operations or path in ("/api/schema/",):
            continue
        resource = _resource(path)
        client = staff_client if resource.startswith(STAFF_ONLY) else alice_client
        url = path.replace("{id}", str(ids.get(resource, 0)))
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code, response.content[:200])
        checked.append(url)
    assert len(checked) >= 30
