"""A shadowed write's changes: the service's report, the monolith's outbox, the comparison."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from strangler_proxy.config import parse_config
from strangler_proxy.errors import ConfigError
from strangler_proxy.exchange import RecordedRequest, RecordedResponse, ShadowOffer
from strangler_proxy.shadow.changes import (
    MonolithOutbox,
    changes_for,
    open_outbox,
    parse_changes,
    split_changes,
)
from strangler_proxy.shadow.compare import ChangeSet, compare, compare_changes

JSON = (("Content-Type", "application/json"),)


def event(kind: str, key: str, type_: str = "updated", **payload: Any) -> dict[str, Any]:
    return {"aggregate_type": kind, "aggregate_id": key, "type": type_, "payload": payload}


def paths(changes: ChangeSet) -> list[tuple[str, object, object]]:
    return [(d.path, d.monolith_value, d.service_value) for d in compare_changes(changes)]


# -- the comparison (pure) ------------------------------------------------------------------


def test_equal_events_match_whatever_their_sequences_and_times() -> None:
    mono = event("store.Product", "7", price="9.50", updated_at="2026-12-05T10:00:00.1+00:00")
    serv = event("store.Product", "7", price="9.50", updated_at="2026-12-05T10:00:01.9Z")
    assert paths(ChangeSet((dict(mono, sequence=3),), (dict(serv, sequence=9),))) == []


def test_a_payload_difference_is_a_change_with_both_values() -> None:
    changes = ChangeSet((event("store.Brand", "3", country="DE"),),
                        (event("store.Brand", "3", country="XX"),))
    found = compare_changes(changes)
    assert [(d.path, d.kind, d.monolith_value, d.service_value) for d in found] == [
        ("changes.store.Brand:3.updated.payload.country", "change", "DE", "XX")]


def test_a_missing_or_extra_event_is_a_change() -> None:
    # given the monolith wrote a stock fact the service did not, and the service deleted
    # a row the monolith kept
    mono = (event("store.Product", "7"), event("inventory.ProductStock", "7", in_stock=True))
    serv = (event("store.Product", "7"), event("store.ProductTag", "4", "deleted"))
    # then both show, with the event counts agreeing (2 and 2)
    assert paths(ChangeSet(mono, serv)) == [
        ("changes.inventory.ProductStock:7.updated",
         {"aggregate_type": "inventory.ProductStock", "aggregate_id": "7", "type": "updated"},
         None),
        ("changes.store.ProductTag:4.deleted", None,
         {"aggregate_type": "store.ProductTag", "aggregate_id": "4", "type": "deleted"}),
    ]


def test_new_rows_pair_by_type_and_their_keys_are_followed_in_later_payloads() -> None:
    # given the two databases gave the new product different keys (101 and 205)
    mono = (event("store.Product", "101", "created", sku="N-1"),
            event("store.ProductTag", "9", "created", product_id=101, tag_id=2))
    serv = (event("store.ProductTag", "12", "created", product_id=205, tag_id=2),
            event("store.Product", "205", "created", sku="N-1"))
    # then the rows match, the tag link's product_id included
    assert paths(ChangeSet(mono, serv)) == []
    # but another tag is a difference
    other = (serv[0] | {"payload": {"product_id": 205, "tag_id": 3}}, serv[1])
    assert paths(ChangeSet(mono, other)) == [
        ("changes.store.ProductTag:new.created.payload.tag_id", 2, 3)]


def test_different_counts_are_said_once() -> None:
    mono = (event("store.Product", "1"), event("store.Product", "2"))
    found = paths(ChangeSet(mono, (event("store.Product", "1"),)))
    assert found[0] == ("changes", "2 events", "1 events")
    assert [p for p, *_ in found[1:]] == ["changes.store.Product:2.updated"]


def test_a_cut_report_is_compared_as_far_as_it_goes() -> None:
    mono = (event("store.Product", "1", name="a"), event("store.Product", "2", name="b"))
    cut = ChangeSet(mono, (event("store.Product", "1", name="a"),), service_truncated=True,
                    service_total=2)
    assert paths(cut) == []
    wrong = ChangeSet(mono, (event("store.Product", "1", name="z"),), service_truncated=True,
                      service_total=2)
    assert paths(wrong) == [("changes.store.Product:1.updated.payload.name", "a", "z")]


def test_compare_folds_changes_into_the_verdict() -> None:
    same = RecordedResponse(200, JSON, b'{"id": 3}')
    assert compare(same, same, changes=ChangeSet()).verdict == "match"
    drift = ChangeSet((event("store.Brand", "3", country="DE"),),
                      (event("store.Brand", "3", country="XX"),))
    result = compare(same, same, changes=drift)
    assert (result.verdict, [d.kind for d in result.differences]) == ("mismatch", ["change"])
    unreadable = compare(same, same, changes=ChangeSet(error="service: not JSON"))
    assert [(d.path, d.service_value) for d in unreadable.differences] == [
        ("changes", "service: not JSON")]


# -- the service's report ---------------------------------------------------------------------


def test_the_report_header_is_taken_off_the_answer() -> None:
    report = json.dumps({"v": 1, "events": [event("store.Brand", "1")], "truncated": True,
                         "events_total": 4})
    answer = RecordedResponse(200, (*JSON, ("x-strangler-shadow-changes", report)), b"{}")
    rest, found = split_changes(answer)
    assert rest.headers == JSON
    assert found is not None
    assert (len(found.events), found.truncated, found.total) == (1, True, 4)
    assert split_changes(rest) == (rest, None)


@pytest.mark.parametrize("value", ["{", "[]", '{"events": 3}', '{"events": [1]}'])
def test_a_report_that_cannot_be_read_is_an_error_not_a_crash(value: str) -> None:
    assert parse_changes(value).error.startswith("X-Strangler-Shadow-Changes")


# -- the monolith's outbox -----------------------------------------------------------------


def make_outbox(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE outbox_outboxevent (id INTEGER PRIMARY KEY, event_id TEXT, "
                   "aggregate_type TEXT, aggregate_id TEXT, sequence INT, event_type TEXT, "
                   "payload TEXT, occurred_at TEXT, request_id TEXT NOT NULL DEFAULT '')")
        db.commit()


def add_event(path: Path, request_id: str, key: str, **payload: Any) -> None:
    with closing(sqlite3.connect(path)) as db:
        db.execute("INSERT INTO outbox_outboxevent (event_id, aggregate_type, aggregate_id, "
                   "sequence, event_type, payload, occurred_at, request_id) VALUES "
                   "(?, 'store.Brand', ?, 1, 'updated', ?, '', ?)",
                   (f"{request_id}-{key}", key, json.dumps(payload), request_id))
        db.commit()


def offer(method: str = "PATCH", request_id: str = "r-1") -> ShadowOffer:
    request = RecordedRequest(method, "/api/brands/1/", "", (), b"", request_id=request_id)
    return ShadowOffer("brands", "/api/brands/", "catalog", request,
                       RecordedResponse(200, JSON, b"{}"))


def test_the_monolith_events_of_one_request_are_read(tmp_path: Path) -> None:
    path = tmp_path / "monolith.sqlite3"
    make_outbox(path)
    add_event(path, "r-1", "1", name="a")
    add_event(path, "r-2", "2", name="b")
    outbox = MonolithOutbox(str(path))
    try:
        assert outbox.events("r-1") == [event("store.Brand", "1", name="a")]
        assert outbox.events("r-3") == []
    finally:
        outbox.close()


def test_changes_wait_for_late_monolith_events_then_give_up(tmp_path: Path) -> None:
    path = tmp_path / "monolith.sqlite3"
    make_outbox(path)
    outbox = MonolithOutbox(str(path))
    service = parse_changes(json.dumps({"events": [event("store.Brand", "1", name="a")]}))
    # given the monolith's event arrives 0.3 s late
    late = threading.Timer(0.3, add_event, (path, "r-1", "1"), {"name": "a"})
    late.start()
    try:
        found = asyncio.run(changes_for(outbox, offer(), service, wait=10.0))
        # then it is waited for
        assert found is not None
        assert compare_changes(found) == []
        # and an event that never comes costs the wait, then shows as a difference
        start = time.monotonic()
        missing = asyncio.run(changes_for(outbox, offer(request_id="r-9"), service, wait=0.3))
        assert 0.3 <= time.monotonic() - start < 5
        assert missing is not None
        assert [d.path for d in compare_changes(missing)][:1] == ["changes"]
    finally:
        late.join()
        outbox.close()


def test_nothing_to_compare_for_reads_without_a_report_or_an_outbox(tmp_path: Path) -> None:
    path = tmp_path / "monolith.sqlite3"
    make_outbox(path)
    outbox = MonolithOutbox(str(path))
    report = parse_changes('{"events": []}')
    try:
        assert asyncio.run(changes_for(outbox, offer("GET"), report, 0)) is None
        assert asyncio.run(changes_for(outbox, offer(), None, 0)) is None
        assert asyncio.run(changes_for(None, offer(), report, 0)) is None
        no_id = asyncio.run(changes_for(outbox, offer(request_id=""), report, 0))
        assert no_id is not None
        assert "X-Request-ID" in no_id.error
    finally:
        outbox.close()


def test_an_unreadable_outbox_is_an_error_naming_it(tmp_path: Path) -> None:
    outbox = MonolithOutbox(str(tmp_path / "absent.sqlite3"))
    found = asyncio.run(changes_for(outbox, offer(), parse_changes('{"events": []}'), 0))
    assert found is not None
    assert found.error.startswith(f"monolith outbox {tmp_path / 'absent.sqlite3'}: ")


@pytest.mark.postgres
def test_the_outbox_is_read_from_postgresql() -> None:
    import os

    import psycopg

    url = os.environ.get("STRANGLER_TEST_PG_URL") or os.environ.get("DATABASE_URL")
    if not url:
        pytest.skip("set STRANGLER_TEST_PG_URL to run the PostgreSQL variant")
    table = "outbox_outboxevent"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS shadow_changes_test")
        conn.execute("SET search_path TO shadow_changes_test")
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, aggregate_type text, "
                     "aggregate_id text, event_type text, payload jsonb, request_id text)")
        conn.execute(f"INSERT INTO {table} (aggregate_type, aggregate_id, event_type, payload, "
                     "request_id) VALUES ('store.Brand', '1', 'updated', '{\"name\": \"a\"}', "
                     "'r-1')")
    separator = "&" if "?" in url else "?"
    outbox = MonolithOutbox(f"{url}{separator}options=-csearch_path%3Dshadow_changes_test")
    try:
        assert outbox.events("r-1") == [event("store.Brand", "1", name="a")]
    finally:
        outbox.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA shadow_changes_test CASCADE")


# -- the routes file ---------------------------------------------------------------------------


UPSTREAM = '[admin]\ntoken = "t"\n[upstreams.monolith]\nurl = "http://127.0.0.1:9"\n'


def test_the_outbox_is_found_next_to_the_routes_file(tmp_path: Path) -> None:
    config = parse_config('[shadow]\nmonolith_outbox = "db/monolith.sqlite3"\n'
                          "changes_wait = 0.5\n" + UPSTREAM, str(tmp_path / "strangler.toml"))
    outbox = open_outbox(config)
    assert outbox is not None
    assert outbox.location == str(tmp_path / "db" / "monolith.sqlite3")
    assert config.shadow.changes_wait == 0.5
    assert open_outbox(parse_config(UPSTREAM, str(tmp_path / "strangler.toml"))) is None


def test_a_bad_changes_wait_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"shadow\.changes_wait"):
        parse_config("[shadow]\nchanges_wait = -1\n" + UPSTREAM,
                     str(tmp_path / "strangler.toml"))


# -- the edge: the report never reaches a client ----------------------------------------------


def test_a_services_changes_report_never_reaches_the_client(tmp_path: Path) -> None:
    import httpx
    from proxy_harness import Request, response, running_proxy

    async def leaky(req: Request, transport: Any) -> None:  # a service that sends it anyway
        transport.write(response(200, b"ok", [("Content-Length", "2"),
                                              ("X-Strangler-Shadow-Changes", '{"events":[]}'),
                                              ("X-Kept", "1")]))

    routes = ('[[routes]]\nname = "brands"\nmatch = { path_prefix = "/api/brands/" }\n'
              'mode = "service"\ntarget = "catalog"\n')
    with running_proxy(tmp_path, {"monolith": leaky, "catalog": leaky}, routes) as proxy:
        for path in ("/api/brands/1/", "/other/"):
            answer = httpx.get(proxy.url + path, timeout=5,
                               headers={"X-Strangler-Shadow-Changes": "from a client"})
            assert (answer.status_code, answer.headers.get("x-kept")) == (200, "1")
            assert "x-strangler-shadow-changes" not in answer.headers
        # and a client's own copy of the header is not passed upstream either
        seen = [r.header("X-Strangler-Shadow-Changes") for u in proxy.upstreams.values()
                for r in u.requests]
        assert seen == [None, None]


def test_a_date_set_wrong_is_not_taken_for_the_writes_own_time() -> None:
    mono = event("store.PriceHistory", "5", valid_from="2026-12-01T00:00:00+00:00")
    serv = event("store.PriceHistory", "5", valid_from="2026-12-02T00:00:00+00:00")
    assert paths(ChangeSet((mono,), (serv,))) == [
        ("changes.store.PriceHistory:5.updated.payload.valid_from",
         "2026-12-01T00:00:00+00:00", "2026-12-02T00:00:00+00:00")]
