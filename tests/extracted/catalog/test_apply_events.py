"""The service applies events at most once, in aggregate order, and tracks its position."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from extracted.catalog.models import (
    AggregateVersion,
    Brand,
    DeadLetter,
    Product,
    ProductSignals,
    StreamPosition,
    SyncAudit,
)

pytestmark = pytest.mark.django_db

BRAND = {"name": "Acme", "slug": "acme", "country": "DE"}


def event(kind: str, key: int, sequence: int, position: int, payload: dict[str, Any],
          event_type: str = "updated", event_id: str | None = None) -> dict[str, Any]:
    data = {"id": event_id or str(uuid.uuid4()), "position": position, "aggregate_type": kind,
            "aggregate_id": str(key), "sequence": sequence, "type": event_type,
            "payload": payload, "occurred_at": "2026-11-26T10:00:00Z"}
    if event_type.startswith("repair"):
        data["format"] = 2  # format 1 (no "format" field) has no repair types
    return data


def post(sync: APIClient, events: list[dict[str, Any]], position: int | None = None,
         stream: str = "monolith") -> Any:
    body: dict[str, Any] = {"stream": stream, "events": events}
    if position is not None:
        body["position"] = position
    return sync.post("/internal/events/", body, format="json")


def test_an_event_delivered_twice_is_applied_once(sync: APIClient) -> None:
    created = event("store.Brand", 7, 1, 1, BRAND, "created")
    renamed = event("store.Brand", 7, 2, 2, dict(BRAND, name="Acme Corp"))
    assert post(sync, [created, renamed]).json() == {
        "applied": 2, "duplicates": 0, "stale": 0, "position": 2, "dead_letters": 0}
    # when the relay restarts and redelivers both
    again = post(sync, [created, renamed]).json()
    # then both are recognised, and nothing changes
    assert (again["applied"], again["duplicates"]) == (0, 2)
    assert Brand.objects.get(pk=7).name == "Acme Corp"
    status = sync.get("/internal/events/?stream=monolith").json()
    assert status == {"stream": "monolith", "position": 2, "processed": 2, "applied": 2,
                      "applied_twice": 0, "dead_letters": 0, "stuck_aggregates": []}


def test_a_stale_event_is_skipped_and_a_gap_holds_only_its_aggregate(
        sync: APIClient) -> None:
    post(sync, [event("store.Brand", 1, 1, 1, BRAND, "created"),
                event("store.Brand", 1, 2, 2, dict(BRAND, name="v2"))])
    # an old change under a new id (e.g. replayed from a backup) is stale
    stale = post(sync, [event("store.Brand", 1, 1, 3, dict(BRAND, name="old"))]).json()
    assert (stale["applied"], stale["stale"]) == (0, 1)
    # a change that skips sequence 3 is a dead letter; the other aggregate applies
    ok = event("store.Brand", 2, 1, 4, dict(BRAND, slug="b2"), "created")
    gap = post(sync, [ok, event("store.Brand", 1, 4, 5, dict(BRAND, name="v4"))], position=5)
    assert gap.status_code == 200
    assert (gap.json()["applied"], gap.json()["dead_letters"], gap.json()["position"]) == (
        1, 1, 5)
    assert Brand.objects.filter(pk=2).exists()
    assert Brand.objects.get(pk=1).name == "v2"
    letter = DeadLetter.objects.get()
    assert "store.Brand:1 expected sequence 3, got 4" in letter.reason
    # and later events of brand 1 wait behind it, in order, while brand 2 flows
    later = post(sync, [event("store.Brand", 1, 5, 6, dict(BRAND, name="v5")),
                        event("store.Brand", 2, 2, 7, dict(BRAND, slug="b2", name="b2v2"))])
    assert (later.json()["applied"], later.json()["dead_letters"]) == (1, 1)
    status = sync.get("/internal/events/?stream=monolith").json()
    assert (status["dead_letters"], status["stuck_aggregates"]) == (2, ["store.Brand:1"])
    # when the missing event arrives as a repair (full state, over the gap)
    repair = post(sync, [event("store.Brand", 1, 6, 8, dict(BRAND, name="v6"), "repaired")])
    # then it applies, supersedes the letters, and the aggregate flows again
    assert repair.json()["applied"] == 1
    assert Brand.objects.get(pk=1).name == "v6"
    assert not DeadLetter.objects.filter(status="open").exists()
    assert post(sync, [event("store.Brand", 1, 7, 9, dict(BRAND, name="v7"))]).json()[
        "applied"] == 1


def test_dead_letters_are_retried_in_order_and_skipped_with_an_audit(sync: APIClient) -> None:
    # given a brand whose creation arrived without a slug (poison) and a later fix
    post(sync, [event("store.Brand", 4, 1, 1, {"name": "x"}, "created"),
                event("store.Brand", 4, 2, 2, BRAND)])
    letters = sync.get("/internal/dead-letters/").json()["dead_letters"]
    assert [(x["sequence"], x["status"]) for x in letters] == [(1, "open"), (2, "open")]
    assert "missing field 'slug'" in letters[0]["reason"]
    # when the first is skipped and the aggregate retried
    skip = sync.post("/internal/dead-letters/", {"action": "skip", "ids": [letters[0]["id"]],
                                                 "actor": "ops"}, format="json")
    assert skip.json() == {"skipped": [letters[0]["id"]]}
    retry = sync.post("/internal/dead-letters/", {"action": "retry", "ids": [],
                                                  "actor": "ops"}, format="json").json()
    # then the second (full state of a brand the service never had) applies
    assert retry == {"retried": [letters[1]["id"]], "still_open": []}
    assert Brand.objects.get(pk=4).slug == "acme"
    assert not DeadLetter.objects.filter(status="open").exists()
    assert list(SyncAudit.objects.values_list("actor", "action")) == [
        ("ops", "dead-letters skip"), ("ops", "dead-letters retry")]


def test_a_retry_applies_a_held_aggregate_in_sequence_order(sync: APIClient) -> None:
    # given brand 8 at sequence 1, then its third change before its second (a gap)
    post(sync, [event("store.Brand", 8, 1, 1, BRAND, "created"),
                event("store.Brand", 8, 3, 2, dict(BRAND, name="v3"))])
    assert DeadLetter.objects.filter(status="open").count() == 1
    # when the second shows up later (re-sent by hand), it waits behind the first letter
    post(sync, [event("store.Brand", 8, 2, 3, dict(BRAND, name="v2"))])
    assert DeadLetter.objects.filter(status="open").count() == 2
    # then a retry applies both in sequence order
    result = sync.post("/internal/dead-letters/", {"action": "retry", "ids": [],
                                                   "actor": "ops"}, format="json").json()
    assert (len(result["retried"]), result["still_open"]) == (2, [])
    assert Brand.objects.get(pk=8).name == "v3"
    assert AggregateVersion.objects.get(aggregate_id="8").sequence == 3


def test_a_newer_event_format_is_refused_whole(sync: APIClient) -> None:
    answer = post(sync, [dict(event("store.Brand", 1, 1, 1, BRAND, "created"), format=9)])
    assert answer.status_code == 400
    assert "format: 9 is not a format this consumer reads" in answer.json()["detail"]


def test_delete_leaves_a_tombstone_that_stops_a_late_backfill(sync: APIClient) -> None:
    post(sync, [event("store.Brand", 3, 1, 1, BRAND, "created"),
                event("store.Brand", 3, 2, 2, BRAND, "deleted")])
    assert not Brand.objects.filter(pk=3).exists()
    # when a backfill batch read before the delete arrives late
    late = sync.post("/internal/snapshot/", {"aggregate_type": "store.Brand", "rows": [
        {"id": 3, "sequence": 1, "fields": BRAND}]}, format="json")
    # then it is skipped: the row stays deleted
    assert late.json() == {"copied": 0, "skipped": 1, "deleted": 0}
    assert not Brand.objects.filter(pk=3).exists()


def test_backfill_then_stream_applies_each_change_once(sync: APIClient) -> None:
    # given the backfill copied brand 5 as of its 2nd change
    copied = sync.post("/internal/snapshot/", {"aggregate_type": "store.Brand", "rows": [
        {"id": 5, "sequence": 2, "fields": dict(BRAND, name="v2")}]}, format="json")
    assert copied.json() == {"copied": 1, "skipped": 0, "deleted": 0}
    # when the stream delivers changes 2 (already in the copy) and 3
    result = post(sync, [event("store.Brand", 5, 2, 10, dict(BRAND, name="v2")),
                         event("store.Brand", 5, 3, 11, dict(BRAND, name="v3"))]).json()
    # then 2 is stale and 3 applies
    assert (result["stale"], result["applied"]) == (1, 1)
    assert Brand.objects.get(pk=5).name == "v3"


def test_position_only_moves_forward_and_is_kept_per_stream(sync: APIClient) -> None:
    assert post(sync, [], position=40).json()["position"] == 40
    assert post(sync, [], position=12).json()["position"] == 40
    assert post(sync, [], position=5, stream="other").json()["position"] == 5
    assert sync.get("/internal/events/?stream=monolith").json()["position"] == 40


def test_signals_of_two_contexts_share_a_row_without_overwriting(sync: APIClient) -> None:
    post(sync, [event("inventory.ProductStock", 9, 1, 1, {"in_stock": True}),
                event("reviews.ProductRating", 9, 1, 2, {"rating": 3.5})])
    post(sync, [event("inventory.ProductStock", 9, 2, 3, {"in_stock": False})])
    signals = ProductSignals.objects.get(product_id=9)
    assert (signals.in_stock, signals.rating) == (False, 3.5)


def test_product_payload_values_are_converted_to_model_types(sync: APIClient) -> None:
    payload = {"sku": "S", "name": "N", "slug": "s", "description": "", "category_id": 1,
               "brand_id": 1, "price": "12.30", "currency": "EUR", "is_active": True,
               "created_at": "2026-01-02T03:04:05.000006Z",
               "updated_at": "2026-01-02T03:04:05.000006Z"}
    assert post(sync, [event("store.Product", 4, 1, 1, payload, "created")]).status_code == 200
    product = Product.objects.get(pk=4)
    assert str(product.price) == "12.30"
    assert product.created_at.microsecond == 6


@pytest.mark.parametrize(("body", "message"), [
    ({"stream": "m", "events": [{"id": "x"}]}, "events[0].position: missing"),
    ({"stream": "m", "events": [event("store.Order", 1, 1, 1, {})]}, "store.Order"),
    ({"stream": "m", "events": [event("store.Brand", 1, 1, 1, {"name": "x"})]},
     "store.Brand.payload: missing field 'slug'"),
    ({"stream": "m", "events": [dict(event("store.Brand", 1, 1, 1, BRAND), poison="bad JSON")]},
     "unreadable: bad JSON"),
])
def test_bad_events_are_dead_letters_naming_the_field(
    sync: APIClient, body: dict[str, Any], message: str
) -> None:
    answer = sync.post("/internal/events/", body, format="json")
    assert answer.status_code == 200
    assert answer.json()["dead_letters"] == 1
    assert message in DeadLetter.objects.get().reason


INTERNAL = [("get", "/internal/events/?stream=m"), ("post", "/internal/events/"),
            ("post", "/internal/snapshot/"), ("get", "/internal/checksums/"),
            ("get", "/internal/rows/"), ("get", "/internal/versions/")]


@pytest.mark.parametrize(("method", "url"), INTERNAL)
@pytest.mark.parametrize("authorization", [None, "Token staff", "Bearer wrong-token",
                                           "Bearer {token}x", "Token {token}", "{token}"])
def test_internal_endpoints_need_the_sync_token(
        method: str, url: str, authorization: str | None, staff: APIClient) -> None:
    client = APIClient()
    if authorization == "Token staff":
        client = staff  # a staff user is not the relay
    elif authorization is not None:  # near misses of the real token are refused too
        token = settings.SERVICE_SYNC_TOKEN
        assert token
        client.credentials(HTTP_AUTHORIZATION=authorization.format(token=token))
    body = {"stream": "m", "events": [event("store.Brand", 1, 1, 1, BRAND, "created")],
            "rows": [{"aggregate_type": "store.Brand", "aggregate_id": "1", "sequence": 1,
                      "payload": BRAND}]}
    answer = getattr(client, method)(url, body if method == "post" else None, format="json")
    assert answer.status_code == 403
    assert not Brand.objects.exists()
    assert not AggregateVersion.objects.exists()
    assert not StreamPosition.objects.exists()


def test_the_owner_refuses_a_backfill_and_the_producers_events(sync: APIClient) -> None:
    # given the service owns the catalog since cutover
    assert sync.post("/internal/ownership/", {"context": "catalog", "owner": "service",
                                              "actor": "t"}, format="json").status_code == 200
    # then a backfill batch is refused, and a forward event is a dead letter
    late = sync.post("/internal/snapshot/", {"aggregate_type": "store.Brand", "rows": [
        {"id": 3, "sequence": 1, "fields": BRAND}]}, format="json")
    assert late.status_code == 400
    assert "owns the catalog since cutover" in late.json()["detail"]
    answer = post(sync, [event("store.Brand", 3, 1, 1, BRAND, "created")]).json()
    assert answer["dead_letters"] == 1
    assert "owned by this service since cutover" in DeadLetter.objects.get().reason
    # and derived facts still flow (their owner is still the monolith)
    assert post(sync, [event("inventory.ProductStock", 3, 1, 2, {"in_stock": True})]).json()[
        "applied"] == 1
    assert list(SyncAudit.objects.values_list("action", flat=True)) == ["ownership"]


def test_orderings_rows_and_the_sagas_replies_on_the_same_stream_are_ignored(
        sync: APIClient) -> None:
    # the monolith's outbox carries ordering's rows too (the ordering service follows them)
    order = event("orders.Order", 3, 1, 1, {"number": "ORD-00000003"}, "created")
    reply = event("payments.CheckoutReply", 3, 1, 2, {"step": "paid"})
    brand = event("store.Brand", 7, 1, 3, BRAND, "created")
    answer = post(sync, [order, reply, brand]).json()
    assert (answer["applied"], answer["ignored"], answer["dead_letters"]) == (1, 2, 0), answer
