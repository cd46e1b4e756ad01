"""The query-capture middleware (contract 4): one JSON line per statement, off by default."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from django.test import override_settings
from rest_framework.test import APIClient

from legacy_monolith.query_log import request_context

FIELDS = {"ts", "request_id", "method", "route", "route_pattern", "path", "view", "sql",
          "duration_ms", "in_transaction", "db_alias"}


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_capture_is_off_by_default(anon: APIClient, shop: Any, tmp_path: Path) -> None:
    with override_settings(STRANGLER_QUERY_LOG=""):
        response = anon.get("/api/products/")
    assert response.status_code == 200
    assert "X-Request-ID" not in response
    assert list(tmp_path.iterdir()) == []


def test_one_line_per_statement_with_every_field(anon: APIClient, shop: Any,
                                                 tmp_path: Path) -> None:
    log = tmp_path / "queries.jsonl"
    pid = shop.products[0].pk
    with override_settings(STRANGLER_QUERY_LOG=str(log)):
        response = anon.get(f"/api/products/{pid}/?x=1", HTTP_X_REQUEST_ID="req-123")
    assert response["X-Request-ID"] == "req-123"
    lines = _lines(log)
    assert len(lines) == 2  # detail + tags prefetch, as pinned in test_catalog_api
    first = lines[0]
    assert set(first) == FIELDS
    assert first["request_id"] == "req-123"
    assert first["method"] == "GET"
    assert first["route"] == "product-detail"
    assert first["route_pattern"] == "api/products/<int:pk>/"
    assert first["path"] == f"/api/products/{pid}/"
    assert first["view"] == "legacy_monolith.store.views.ProductViewSet"
    assert "store_product" in first["sql"]
    assert "%s" in first["sql"]
    # Parameter values stay out of the text: the id and the review status are placeholders.
    assert '"store_product"."id" = %s' in first["sql"]
    assert "approved" not in first["sql"]
    assert first["duration_ms"] >= 0
    assert first["db_alias"] == "default"
    assert isinstance(first["in_transaction"], bool)
    assert datetime.fromisoformat(first["ts"].replace("Z", "+00:00")).tzinfo is not None


def test_writes_are_logged_in_transaction_and_ids_are_generated(
        alice_client: APIClient, shop: Any, tmp_path: Path) -> None:
    log = tmp_path / "q.jsonl"
    with override_settings(STRANGLER_QUERY_LOG=str(log)):
        alice_client.post("/api/cart/items/", {"product": shop.products[0].pk})
        alice_client.post("/api/checkout/", {"shipping_address": shop.alice_address.pk})
    lines = _lines(log)
    routes = {line["route"] for line in lines}
    assert routes == {"cart-items", "checkout"}
    ids = {line["request_id"] for line in lines}
    assert len(ids) == 2
    checkout = [line for line in lines if line["route"] == "checkout"]
    assert any("INSERT INTO" in line["sql"] and "orders_order" in line["sql"]
               for line in checkout)
    # The test runs inside a transaction, so every statement is in one here.
    assert all(line["in_transaction"] for line in checkout)
    assert {line["view"] for line in checkout} == {"legacy_monolith.orders.views.checkout"}


def test_unknown_paths_are_logged_without_a_route(rf: Any) -> None:
    ctx = request_context(rf.get("/nope/", HTTP_X_REQUEST_ID="r1"))
    assert (ctx.route, ctx.route_pattern, ctx.view, ctx.path) == ("", "", "", "/nope/")
    assert ctx.request_id == "r1"


def test_user_supplied_values_never_reach_the_log(anon: APIClient, shop: Any,
                                                  tmp_path: Path) -> None:
    # given capture on, a login with a password and a search with a distinctive term
    log = tmp_path / "q.jsonl"
    with override_settings(STRANGLER_QUERY_LOG=str(log)):
        login = anon.post("/api/auth/token/", {"username": "alice",
                                               "password": "alice-password"})
        search = anon.get("/api/products/", {"search": "zz-secret-term"})
    # then the statements ran and were logged, with placeholders instead of the values
    assert (login.status_code, search.status_code) == (200, 200)
    text = log.read_text()
    assert "accounts_user" in text
    assert "%s" in text
    for secret in ("alice", "alice-password", "zz-secret-term", login.json()["token"]):
        assert secret not in text, secret
