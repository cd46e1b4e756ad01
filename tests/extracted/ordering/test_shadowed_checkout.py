"""A shadowed checkout in the ordering service reports the events it rolled back, stamped
with the proxy's request id (strangler.shadow_changes, generic over services)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from extracted.ordering.models import Order, OutboxEvent, Product, ProductAvailability
from extracted.servicekit.auth import CallerIdentity
from strangler_proxy import sign_marker

pytestmark = pytest.mark.django_db
SECRET = "ordering-shadow-secret"


def test_a_shadowed_checkout_reports_its_events_and_keeps_nothing(settings: Any) -> None:
    settings.STRANGLER_SHADOW_SECRET = SECRET
    Product.objects.create(id=1, sku="SKU-1", name="Thing", price="9.50")
    ProductAvailability.objects.create(product_id=1, available=10)
    alice = APIClient()
    alice.force_authenticate(user=CallerIdentity(username="alice", is_staff=False, id=5),  # type: ignore[arg-type]
                             token="t")
    alice.post("/api/cart/items/", {"product": 1, "quantity": 2}, HTTP_X_REQUEST_ID="real-1")
    before = OutboxEvent.objects.count()
    assert set(OutboxEvent.objects.values_list("request_id", flat=True)) == {"real-1"}
    # when the checkout comes as a signed shadow copy
    answer = alice.post("/api/checkout/", {"shipping_address": 7}, HTTP_X_REQUEST_ID="px-9",
                        HTTP_X_STRANGLER_SHADOW=sign_marker(SECRET, "POST", "/api/checkout/"))
    # then it is answered, its events are reported under the request id, and nothing stays
    assert answer.status_code == 201, answer.json()
    report = json.loads(answer["X-Strangler-Shadow-Changes"])
    assert report["request_id"] == "px-9"
    assert [(e["aggregate_type"], e["type"]) for e in report["events"]][:2] == [
        ("orders.Order", "created"), ("orders.OrderLine", "created")]
    assert (Order.objects.count(), OutboxEvent.objects.count()) == (0, before)
