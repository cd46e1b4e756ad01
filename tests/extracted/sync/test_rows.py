"""Normalisation makes SQLite's and PostgreSQL's raw values compare equal."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

import extracted.sync.cursor
import extracted.sync.database
import extracted.sync.events
import extracted.sync.rows
import extracted.sync.spec
from extracted.sync.errors import BadEvent
from extracted.sync.events import event_from_json
from extracted.sync.rows import (
    diff_keys,
    differing_ranges,
    normalize_row,
    normalize_value,
    row_digest,
    summarize,
)
from extracted.sync.spec import FieldSpec, spec_for


@pytest.mark.parametrize("module", [extracted.sync.rows, extracted.sync.spec,
                                    extracted.sync.events, extracted.sync.cursor,
                                    extracted.sync.database])
def test_docstring_examples_run(module: object) -> None:
    failed, attempted = doctest.testmod(module)  # type: ignore[arg-type]
    assert attempted > 0
    assert failed == 0


def test_sqlite_and_postgres_values_of_one_row_digest_the_same() -> None:
    spec = spec_for("store.Product")
    common = {"sku": "S-1", "name": "Mug", "slug": "mug", "description": "", "category_id": 2,
              "brand_id": 3, "currency": "EUR"}
    from_sqlite = dict(common, price=19.9, is_active=1,
                       created_at="2026-01-02 03:04:05.000006",
                       updated_at="2026-01-02 03:04:05")
    plus_two = timezone(timedelta(hours=2))
    from_postgres = dict(common, price=Decimal("19.90"), is_active=True,
                         created_at=datetime(2026, 1, 2, 5, 4, 5, 6, tzinfo=plus_two),
                         updated_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert row_digest(1, normalize_row(spec, from_sqlite)) == row_digest(
        1, normalize_row(spec, from_postgres))
    changed = dict(from_postgres, price=Decimal("19.91"))
    assert row_digest(1, normalize_row(spec, changed)) != row_digest(
        1, normalize_row(spec, from_postgres))


def test_bad_values_name_the_field() -> None:
    with pytest.raises(BadEvent, match="field price: 'abc' is not a valid decimal"):
        normalize_value(FieldSpec("price", "decimal"), "abc")
    with pytest.raises(BadEvent, match="row has no field 'slug'"):
        normalize_row(spec_for("common.Tag"), {"name": "x"})


def test_range_summaries_find_the_range_that_differs() -> None:
    left = summarize([(1, "a"), (2, "b"), (1500, "c")], 1000)
    right = summarize([(1, "a"), (2, "b"), (1500, "X"), (2100, "d")], 1000)
    assert differing_ranges(left, right) == [1000, 2000]
    assert differing_ranges(left, left) == []


def test_key_diff_separates_missing_extra_and_different() -> None:
    diff = diff_keys({1: "a", 2: "b", 3: "c"}, {2: "b", 3: "z", 4: "d"})
    assert (diff.missing, diff.extra, diff.different) == ((1,), (4,), (3,))


def test_event_json_is_validated_field_by_field() -> None:
    good = {"id": "e", "position": "7", "aggregate_type": "store.Brand", "aggregate_id": 3,
            "sequence": 2, "type": "updated", "payload": '{"name": "x"}'}
    event = event_from_json(good)
    assert (event.position, event.aggregate_id, event.payload) == (7, "3", {"name": "x"})
    with pytest.raises(BadEvent, match=r"events\[0\].type: 'renamed' is not one of"):
        event_from_json(dict(good, type="renamed"), "events[0]")
    with pytest.raises(BadEvent, match="event.sequence: expected an integer, got True"):
        event_from_json(dict(good, sequence=True))
    with pytest.raises(BadEvent, match="aggregate_type 'store.Order' is not part"):
        spec_for("store.Order")
