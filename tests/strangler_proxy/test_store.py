"""The diff store: SQLite and PostgreSQL, redaction before storage, retention."""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from strangler_proxy.shadow.store import (
    REDACTED,
    DiffRecord,
    DiffStore,
    Redaction,
    StoreError,
    open_store,
    redact_record,
)


def record(route: str = "products", verdict: str = "mismatch", at: float | None = None,
           **kw: object) -> DiffRecord:
    data: dict[str, object] = {
        "route": route, "template": "/api/products/{id}/", "method": "GET",
        "path": "/api/products/1/", "verdict": verdict, "monolith_status": 200,
        "service_status": 200, "differences": ({"path": "$.price", "kind": "value",
                                                "monolith": "9.50", "service": "9.5"},),
        "monolith_body": b'{"price": "9.50"}', "service_body": b'{"price": "9.5"}',
        "monolith_ms": 3.5, "service_ms": 4.5}
    if at is not None:
        data["at"] = at
    data.update(kw)
    return DiffRecord(**data)  # type: ignore[arg-type]


def pg_url() -> str | None:
    return os.environ.get("STRANGLER_TEST_PG_URL") or os.environ.get("DATABASE_URL")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DiffStore]:
    if request.param == "sqlite":
        opened = open_store(str(tmp_path / "diffs.sqlite3"), retention_count=1000)
        try:
            yield opened
        finally:
            opened.close()
        return
    url = pg_url()
    if not url:
        pytest.skip("PostgreSQL store test: set STRANGLER_TEST_PG_URL (or DATABASE_URL)")
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    opened = open_store(url, retention_count=1000, prefix=prefix)
    try:
        yield opened
    finally:
        opened._execute(f"DROP TABLE IF EXISTS {prefix}exchanges")  # noqa: SLF001 - cleanup
        opened._execute(f"DROP TABLE IF EXISTS {prefix}counters")  # noqa: SLF001
        opened._conn.commit()  # noqa: SLF001
        opened.close()


def test_records_round_trip_with_bodies_and_differences(store: DiffStore) -> None:
    store.add([record(), record(verdict="match", monolith_body=b"", service_body=b"")])
    rows = store.records(route="products")
    assert [r.verdict for r in rows] == ["mismatch", "match"]
    assert rows[0].monolith_body == b""  # summaries leave bodies out
    full = store.get(rows[0].id)
    assert full is not None
    assert full.monolith_body == b'{"price": "9.50"}'
    assert full.differences[0]["path"] == "$.price"
    assert full.summary()["schema_version"] == 1


def test_filters_by_route_since_kind_and_verdict(store: DiffStore) -> None:
    store.add([record(at=100.0), record(at=200.0, kind="self"), record("other", at=300.0)])
    assert len(store.records(route="products", since=150.0)) == 1
    assert [r.kind for r in store.records(kind="self")] == ["self"]
    assert store.records(route="nope") == []
    assert len(store.records(verdict="mismatch", limit=2)) == 2


def test_counters_accumulate(store: DiffStore) -> None:
    store.add_counts({("products", "dropped_queue_full"): 2})
    store.add_counts({("products", "dropped_queue_full"): 3, ("b", "x"): 1})
    assert store.counts("products") == {("products", "dropped_queue_full"): 5}


def test_retention_by_count_and_age(store: DiffStore) -> None:
    store.retention_count = 5
    store.retention_days = 1
    store.add([record(at=1000.0 + i) for i in range(8)])
    store.add([record(at=100.0)])
    deleted = store.prune(now=1000.0 + 86400 + 3.5)
    remaining = sorted(r.at for r in store.records())
    assert deleted >= 4
    assert remaining == [1000.0 + i for i in range(4, 8)]


def test_secrets_are_redacted_before_storage(store: DiffStore) -> None:
    redaction = Redaction.from_settings(["x-api-key"], ["password", "token"])
    raw = record(
        query="q=1&token=abc",
        request_headers=(("Authorization", "Bearer s3cret"), ("Cookie", "sid=s3cret"),
                         ("X-Api-Key", "s3cret"), ("Content-Type", "application/json")),
        request_body=b'{"user": "a", "password": "s3cret"}',
        monolith_headers=(("Set-Cookie", "sid=s3cret"), ("Content-Type", "application/json")),
        service_headers=(("Content-Type", "application/json"),),
        monolith_body=b'{"token": "s3cret", "items": [{"password": "s3cret"}]}',
        differences=({"path": "$.token", "kind": "value", "monolith": "s3cret",
                      "service": "other"},
                     {"path": "$.user", "kind": "value", "monolith": {"password": "s3cret"},
                      "service": None},
                     # under a secret key, deeper: a list item, a key that needs brackets
                     {"path": "$.token[0]", "kind": "value", "monolith": "s3cret",
                      "service": "x"},
                     {"path": '$.a["password"].b', "kind": "type", "monolith": "s3cret",
                      "service": 1}))
    store.add([redact_record(raw, redaction)])
    stored = store.get(store.records()[0].id)
    assert stored is not None
    dumped = json.dumps(stored.summary()) + repr(stored)
    assert "s3cret" not in dumped
    assert "abc" not in stored.query
    assert dict(stored.request_headers)["Authorization"] == REDACTED
    assert json.loads(stored.request_body)["user"] == "a"


def test_sqlite_store_uses_wal_in_one_file(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite3"
    opened = open_store(str(path))
    try:
        opened.add([record()])
    finally:
        opened.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unopenable_store_says_which_setting_to_fix(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite3").mkdir()
    with pytest.raises(StoreError, match=r"\[shadow\]\.store"):
        open_store(str(tmp_path / "dir.sqlite3"))


def test_unreachable_postgres_is_one_clear_error() -> None:
    with pytest.raises(StoreError, match="cannot connect") as info:
        open_store("postgresql://u:pw@127.0.0.1:1/x")
    assert "pw" not in str(info.value)
