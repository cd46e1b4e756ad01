"""Customers: token auth, me, addresses (soft delete), loyalty."""

from __future__ import annotations

from typing import Any

from rest_framework.test import APIClient

from legacy_monolith.accounts.models import Address


def test_token_auth_round_trip(anon: APIClient, shop: Any) -> None:
    response = anon.post("/api/auth/token/", {"username": "alice", "password": "alice-password"})
    assert response.status_code == 200
    token = response.json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/me/").json()["username"] == "alice"


def test_token_auth_rejects_bad_credentials(anon: APIClient, shop: Any) -> None:
    response = anon.post("/api/auth/token/", {"username": "alice", "password": "nope"})
    assert response.status_code == 400
    assert "non_field_errors" in response.json()
    assert anon.post("/api/auth/token/", {}).json().keys() == {"username", "password"}


def test_invalid_token_is_401(shop: Any) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token 0000")
    assert client.get("/api/me/").status_code == 401


def test_session_auth_works_too(shop: Any) -> None:
    client = APIClient()
    assert client.login(username="alice", password="alice-password")
    assert client.get("/api/me/").json()["username"] == "alice"


def test_me_read_and_update(anon: APIClient, alice_client: APIClient, shop: Any) -> None:
    assert anon.get("/api/me/").status_code == 401
    updated = alice_client.patch("/api/me/", {"first_name": "Alicia", "username": "mallory",
                                              "loyalty_tier": "gold"})
    assert updated.status_code == 200
    assert updated.json()["first_name"] == "Alicia"
    assert updated.json()["username"] == "alice"  # read-only
    assert updated.json()["loyalty_tier"] == "bronze"
    assert "email" in alice_client.patch("/api/me/", {"email": "not-an-email"}).json()


def test_address_crud_is_per_user_and_soft_deletes(alice_client: APIClient,
                                                   bob_client: APIClient, shop: Any) -> None:
    url = f"/api/addresses/{shop.alice_address.pk}/"
    assert bob_client.get(url).status_code == 404
    created = alice_client.post("/api/addresses/", {"line1": "2 Side St", "city": "Lyon",
                                                    "postcode": "69001", "country": "FR"})
    assert created.status_code == 201
    assert alice_client.get("/api/addresses/").json()["count"] == 2
    bad = alice_client.post("/api/addresses/", {"line1": "x", "country": "France"})
    assert set(bad.json()) == {"city", "postcode", "country"}
    assert alice_client.patch(url, {"city": "Potsdam"}).json()["city"] == "Potsdam"
    assert alice_client.delete(url).status_code == 204
    assert alice_client.get(url).status_code == 404
    assert Address.objects.get(pk=shop.alice_address.pk).deleted_at is not None


def test_address_list_query_count_is_pinned(alice_client: APIClient, shop: Any,
                                            django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(2):
        assert alice_client.get("/api/addresses/").json()["count"] == 1


def test_loyalty_shows_points_from_paid_orders(alice_client: APIClient, paid_order: Any) -> None:
    body = alice_client.get("/api/loyalty/").json()
    assert body["points"] == 39
    assert body["tier"] == "bronze"
    assert [t["order"] for t in body["transactions"]] == [paid_order.pk]
    assert APIClient().get("/api/loyalty/").status_code == 401
