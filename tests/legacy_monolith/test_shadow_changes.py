"""The Django side of shadowed-write comparison (``strangler.shadow_changes``): outbox events
carry the request id (contract 5, format 3); a shadow write reports what it rolled back; its
calls to other contexts carry a marker of their own."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from django.test import RequestFactory
from rest_framework.test import APIClient

from legacy_monolith.outbox.models import OutboxEvent
from legacy_monolith.store.models import Product
from strangler.shadow_changes import httpx_event_hooks, request_scope, shadow_headers
from strangler_proxy import check_marker, sign_marker

SECRET = "test-marker-secret"


@pytest.fixture(autouse=True)
def _marker_secret(settings: Any) -> None:
    settings.STRANGLER_SHADOW_SECRET = SECRET


def new_product(shop: Any, sku: str) -> dict[str, object]:
    return {"sku": sku, "name": "Changed", "slug": sku.lower(), "category": shop.category.pk,
            "brand": shop.brand.pk, "price": "1.00"}


def test_a_write_stamps_its_events_with_the_request_id(staff_client: APIClient,
                                                        shop: Any) -> None:
    # when two writes are made, one with the proxy's X-Request-ID and one without
    staff_client.post("/api/products/", new_product(shop, "SKU-R1"), HTTP_X_REQUEST_ID="px-1")
    staff_client.post("/api/products/", new_product(shop, "SKU-R2"))
    # then the first's events carry that id, the second's one made up for it
    first = Product.objects.get(sku="SKU-R1")
    second = Product.objects.get(sku="SKU-R2")
    ids = {key: set(OutboxEvent.objects.filter(aggregate_type="store.Product",
                                               aggregate_id=str(key))
                    .values_list("request_id", flat=True))
           for key in (first.pk, second.pk)}
    assert ids[first.pk] == {"px-1"}
    (made_up,) = ids[second.pk]
    assert made_up not in ("", "px-1")


def test_a_shadow_write_reports_the_rows_and_events_it_rolled_back(
        staff_client: APIClient, shop: Any) -> None:
    before = OutboxEvent.objects.count()
    answer = staff_client.post("/api/products/", new_product(shop, "SKU-S1"),
                               HTTP_X_REQUEST_ID="px-2", HTTP_X_STRANGLER_SHADOW=sign_marker(
                                   SECRET, "POST", "/api/products/"))
    assert answer.status_code == 201
    report = json.loads(answer["X-Strangler-Shadow-Changes"])
    key = str(answer.json()["id"])
    assert report["request_id"] == "px-2"
    assert [(e["aggregate_type"], e["aggregate_id"], e["type"]) for e in report["events"]] == [
        ("store.Product", key, "created")]
    assert report["events"][0]["payload"]["sku"] == "SKU-S1"
    assert {"model": "store.Product", "pk": key, "action": "created"} in report["rows"]
    # and nothing stayed
    assert OutboxEvent.objects.count() == before
    assert not Product.objects.filter(sku="SKU-S1").exists()


def test_a_normal_write_reports_nothing(staff_client: APIClient, shop: Any) -> None:
    answer = staff_client.post("/api/products/", new_product(shop, "SKU-N1"))
    assert answer.status_code == 201
    assert "X-Strangler-Shadow-Changes" not in answer


class _Seen(BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []  # noqa: RUF012 - one server per test

    def do_POST(self) -> None:  # noqa: N802
        self.seen.append(dict(self.headers.items()))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def other_context() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A real HTTP server on 127.0.0.1 standing for another context's API."""
    handler = type("Handler", (_Seen,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_shadow_writes_calls_carry_a_marker_signed_for_them(
        other_context: tuple[str, list[dict[str, str]]]) -> None:
    url, seen = other_context
    request = RequestFactory().post("/api/orders/", HTTP_X_REQUEST_ID="px-3")
    with httpx.Client(event_hooks=httpx_event_hooks(), timeout=5) as client:
        # when a shadow write calls another context, and then a normal request does
        with request_scope(request, shadow=True):
            client.post(f"{url}/api/stock/reserve/?x=1")
        with request_scope(request, shadow=False):
            client.post(f"{url}/api/stock/reserve/")
    # then the shadow call carries a marker valid for its own method and path, and both
    # carry the request id; the normal call no marker
    shadowed, normal = seen
    assert check_marker(shadowed["X-Strangler-Shadow"], SECRET, "POST",
                        "/api/stock/reserve/") == ""
    assert (shadowed["X-Request-ID"], normal["X-Request-ID"]) == ("px-3", "px-3")
    assert "X-Strangler-Shadow" not in normal
    assert shadow_headers("POST", url) == {}  # outside any request: nothing


def test_without_a_secret_a_shadow_call_is_not_marked(settings: Any) -> None:
    settings.STRANGLER_SHADOW_SECRET = None
    request = RequestFactory().post("/api/orders/", HTTP_X_REQUEST_ID="px-4")
    with request_scope(request, shadow=True):
        assert shadow_headers("POST", "http://h/x/") == {"X-Request-ID": "px-4"}


@pytest.mark.django_db(transaction=True)
def test_a_shadow_write_whose_transaction_broke_reports_no_changes() -> None:
    from django.contrib.auth import get_user_model
    from django.db import IntegrityError
    from django.http import HttpRequest, HttpResponse

    from strangler.shadow_rollback import ShadowRollbackMiddleware

    User = get_user_model()  # noqa: N806

    def view(request: HttpRequest) -> HttpResponse:
        User.objects.create(username="twice")
        try:
            User.objects.create(username="twice")  # breaks the transaction (no savepoint)
        except IntegrityError:
            return HttpResponse(status=409)
        return HttpResponse(status=201)

    request = RequestFactory().post("/api/signup/", HTTP_X_REQUEST_ID="px-5",
                                    HTTP_X_STRANGLER_SHADOW=sign_marker(SECRET, "POST",
                                                                        "/api/signup/"))
    answer = ShadowRollbackMiddleware(view)(request)
    assert answer.status_code == 409
    report = json.loads(answer["X-Strangler-Shadow-Changes"])
    assert (report["events"], report["rows"]) == ([], [])
    assert "nothing would have been written" in report["note"]
    assert not User.objects.filter(username="twice").exists()
