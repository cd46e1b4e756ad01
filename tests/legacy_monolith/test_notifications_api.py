"""Notifications: the user's messages, preferences, and templates for staff."""

from __future__ import annotations

from typing import Any

from monolith_helpers import place_order
from rest_framework.test import APIClient

from legacy_monolith.notifications.models import OutboundMessage


def test_messages_list_only_mine(alice_client: APIClient, bob_client: APIClient,
                                 paid_order: Any) -> None:
    body = alice_client.get("/api/notifications/messages/").json()
    assert body["count"] == 1
    message = body["results"][0]
    assert message["template"] == "order_paid"
    assert message["subject_type"] == "orders.order"
    assert message["object_id"] == paid_order.pk
    assert bob_client.get("/api/notifications/messages/").json()["count"] == 0
    assert bob_client.get(f"/api/notifications/messages/{message['id']}/").status_code == 404


def test_message_list_query_count_is_pinned(alice_client: APIClient, paid_order: Any,
                                            django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(2):
        assert alice_client.get("/api/notifications/messages/").status_code == 200


def test_preferences_opt_out_stops_messages(alice_client: APIClient, shop: Any) -> None:
    assert alice_client.get("/api/notifications/preferences/").json() == {
        "email_opt_in": True, "sms_opt_in": False}
    changed = alice_client.patch("/api/notifications/preferences/", {"email_opt_in": False})
    assert changed.json()["email_opt_in"] is False
    assert alice_client.put("/api/notifications/preferences/", {"email_opt_in": "maybe"}
                            ).status_code == 400
    order = place_order(alice_client, shop, [(shop.products[1], 1)])
    alice_client.post(f"/api/orders/{order['id']}/pay/")
    assert OutboundMessage.objects.count() == 0
    assert APIClient().get("/api/notifications/preferences/").status_code == 401


def test_templates_are_staff_only(alice_client: APIClient, staff_client: APIClient,
                                  shop: Any) -> None:
    assert alice_client.get("/api/notifications/templates/").status_code == 403
    created = staff_client.post("/api/notifications/templates/", {
        "code": "welcome", "subject": "Hi", "body": "Welcome"})
    assert created.status_code == 201
    url = f"/api/notifications/templates/{created.json()['id']}/"
    assert staff_client.patch(url, {"subject": "Hello"}).json()["subject"] == "Hello"
    assert staff_client.post("/api/notifications/templates/", {"code": "welcome"}
                             ).json().keys() == {"code", "subject", "body"}
    assert staff_client.delete(url).status_code == 204
