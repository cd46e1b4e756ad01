"""Payments, refunds, coupons, carriers, shipments and tracking (the rest of `orders`)."""

from __future__ import annotations

from typing import Any

from rest_framework.test import APIClient

from legacy_monolith.orders.models import Order, PaymentIntent, Refund, Shipment


def test_payments_are_visible_to_their_owner_and_staff(alice_client: APIClient,
                                                      bob_client: APIClient,
                                                      staff_client: APIClient,
                                                      paid_order: Order) -> None:
    mine = alice_client.get("/api/payments/").json()
    assert mine["count"] == 1
    assert mine["results"][0]["status"] == "succeeded"
    assert bob_client.get("/api/payments/").json()["count"] == 0
    intent_id = mine["results"][0]["id"]
    assert bob_client.get(f"/api/payments/{intent_id}/").status_code == 404
    assert staff_client.get(f"/api/payments/{intent_id}/").json()["amount"] == "39.98"
    assert APIClient().get("/api/payments/").status_code == 401


def test_payment_list_query_count_is_pinned(staff_client: APIClient, paid_order: Order,
                                            django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(2):
        assert staff_client.get("/api/payments/").status_code == 200


def test_refunds_are_staff_only_and_bounded_by_the_payment(alice_client: APIClient,
                                                          staff_client: APIClient,
                                                          paid_order: Order) -> None:
    intent = PaymentIntent.objects.get(order=paid_order)
    assert alice_client.get("/api/refunds/").status_code == 403
    partial = staff_client.post("/api/refunds/", {"payment_intent": intent.pk,
                                                  "amount": "10.00", "reason": "damaged"})
    assert partial.status_code == 201
    too_much = staff_client.post("/api/refunds/", {"payment_intent": intent.pk,
                                                   "amount": "30.00", "reason": "again"})
    assert too_much.status_code == 400
    assert too_much.json() == {"amount": ["At most 29.98 can be refunded."]}
    negative = staff_client.post("/api/refunds/", {"payment_intent": intent.pk,
                                                   "amount": "-1", "reason": "x"})
    assert "amount" in negative.json()
    listed = staff_client.get(f"/api/refunds/?payment_intent={intent.pk}").json()
    assert listed["count"] == 1
    assert staff_client.get(f"/api/refunds/{partial.json()['id']}/").status_code == 200
    assert Refund.objects.count() == 1


def test_coupon_crud_is_staff_only(alice_client: APIClient, staff_client: APIClient,
                                   shop: Any) -> None:
    assert alice_client.get("/api/coupons/").status_code == 403
    created = staff_client.post("/api/coupons/", {"code": "HALF", "percent_off": 50})
    assert created.status_code == 201
    url = f"/api/coupons/{created.json()['id']}/"
    assert staff_client.patch(url, {"active": False}).json()["active"] is False
    bad = staff_client.post("/api/coupons/", {"code": "HALF", "percent_off": 150})
    assert set(bad.json()) == {"code", "percent_off"}
    assert staff_client.delete(url).status_code == 204
    assert staff_client.get("/api/coupons/?active=true").json()["count"] == 1


def test_carriers_read_by_users_written_by_staff(alice_client: APIClient,
                                                staff_client: APIClient, shop: Any) -> None:
    assert APIClient().get("/api/carriers/").status_code == 401
    assert alice_client.get("/api/carriers/").json()["results"][0]["code"] == "dhl"
    assert alice_client.post("/api/carriers/", {"code": "ups", "name": "UPS"}).status_code == 403
    created = staff_client.post("/api/carriers/", {"code": "ups", "name": "UPS"})
    assert created.status_code == 201
    url = f"/api/carriers/{created.json()['id']}/"
    assert staff_client.put(url, {"code": "ups", "name": "United"}).json()["name"] == "United"
    assert staff_client.delete(url).status_code == 204


def _ship(staff_client: APIClient, order: Order) -> dict[str, Any]:
    response = staff_client.post(f"/api/orders/{order.pk}/ship/", {"carrier": "dhl"})
    assert response.status_code == 201
    return dict(response.json())


def test_shipments_and_tracking(alice_client: APIClient, bob_client: APIClient,
                                staff_client: APIClient, paid_order: Order) -> None:
    shipment = _ship(staff_client, paid_order)
    url = f"/api/shipments/{shipment['id']}/"
    assert alice_client.get("/api/shipments/").json()["count"] == 1
    assert bob_client.get(url).status_code == 404
    assert alice_client.get(url).json()["carrier"] == "dhl"
    events = alice_client.get(f"{url}tracking/").json()
    assert [e["status"] for e in events] == ["label_created"]
    assert alice_client.post(f"{url}tracking/", {"status": "x"}).status_code == 403
    assert staff_client.post(f"{url}tracking/", {"location": "hub"}).json() == {
        "status": ["This field is required."]}
    added = staff_client.post(f"{url}tracking/", {"status": "delivered", "location": "door"})
    assert added.status_code == 201
    assert Shipment.objects.get().status == "delivered"


def test_shipment_list_query_count_is_pinned(staff_client: APIClient, paid_order: Order,
                                             django_assert_num_queries: Any) -> None:
    _ship(staff_client, paid_order)
    with django_assert_num_queries(2):
        assert staff_client.get("/api/shipments/").json()["count"] == 1
