"""Contract 5, format 3: events carry the request id that wrote them; older formats still read."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from extracted.sync.database import Database
from extracted.sync.errors import BadEvent
from extracted.sync.events import FORMAT, event_from_json
from extracted.sync.outbox import OutboxTable

BASE = {"id": "e1", "position": 1, "aggregate_type": "store.Brand", "aggregate_id": "3",
        "sequence": 1, "type": "updated", "payload": {"name": "a"}}


def test_format_3_carries_the_request_id_and_writes_it_back() -> None:
    parsed = event_from_json(dict(BASE, format=3, request_id="r-1"))
    assert parsed.request_id == "r-1"
    assert (parsed.to_json()["format"], parsed.to_json()["request_id"]) == (FORMAT, "r-1")


@pytest.mark.parametrize("fmt", [None, 1, 2])
def test_older_formats_are_read_with_an_empty_request_id(fmt: int | None) -> None:
    data = dict(BASE, request_id="ignored") if fmt is None else dict(BASE, format=fmt)
    assert event_from_json(data).request_id == ""


@pytest.mark.parametrize("value", [7, "x" * 65])
def test_a_bad_request_id_names_the_field(value: object) -> None:
    with pytest.raises(BadEvent, match=r"^event\.request_id: expected a string"):
        event_from_json(dict(BASE, format=3, request_id=value))


def test_format_4_is_refused_naming_the_upgrade() -> None:
    with pytest.raises(BadEvent, match="format: 4 is not a format this consumer reads"):
        event_from_json(dict(BASE, format=4))


@pytest.mark.parametrize("with_column", [True, False])
def test_the_relay_reads_outboxes_with_and_without_the_column(tmp_path: Path,
                                                             with_column: bool) -> None:
    # given an outbox table migrated to format 3, or one not yet migrated
    path = tmp_path / "producer.sqlite3"
    extra = ", request_id TEXT NOT NULL DEFAULT ''" if with_column else ""
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE outbox_outboxevent (id INTEGER PRIMARY KEY, event_id TEXT, "
                   "aggregate_type TEXT, aggregate_id TEXT, sequence INT, event_type TEXT, "
                   f"payload TEXT, occurred_at TEXT{extra})")
        columns = "event_id, aggregate_type, aggregate_id, sequence, event_type, payload, " \
                  "occurred_at" + (", request_id" if with_column else "")
        values = "'e1', 'store.Brand', '3', 1, 'updated', '{}', ''" + (
            ", 'r-9'" if with_column else "")
        db.execute(f"INSERT INTO outbox_outboxevent ({columns}) VALUES ({values})")
        db.commit()
    # when the relay's reader fetches it
    events = OutboxTable(Database(f"sqlite:///{path}"), "outbox_outboxevent").fetch(0, 10)
    # then the event is read, with its request id where there is one
    assert [(e.aggregate_id, e.request_id, e.poison) for e in events] == [
        ("3", "r-9" if with_column else "", "")]


@pytest.mark.django_db
def test_the_catalog_applies_format_3_and_refuses_format_4(sync: object) -> None:
    from rest_framework.test import APIClient

    from extracted.catalog.models import Brand

    assert isinstance(sync, APIClient)
    created = dict(BASE, format=3, request_id="r-1", type="created",
                   payload={"name": "Acme", "slug": "acme", "country": "DE"})
    answer = sync.post("/internal/events/", {"stream": "monolith", "events": [created]},
                       format="json")
    assert (answer.status_code, answer.json()["applied"]) == (200, 1), answer.content
    assert Brand.objects.get(pk=3).name == "Acme"
    newer = dict(created, id="e2", format=4, sequence=2, position=2)
    refused = sync.post("/internal/events/", {"stream": "monolith", "events": [newer]},
                        format="json")
    assert refused.status_code == 400
    assert "format: 4" in refused.json()["detail"]
