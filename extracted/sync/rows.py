"""Make rows from two databases comparable, and summarise them for reconcile.

Each side reads its rows its own way (raw DB-API on the monolith, the ORM in the service);
``normalize_row`` turns both into the same canonical JSON values, so a row digest is equal
exactly when the data is. Ranges of primary keys are summarised as (count, digest), compared
first; only ranges that differ are fetched row by row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from extracted.sync.errors import BadEvent
from extracted.sync.spec import FieldSpec, TableSpec

CENT = Decimal("0.01")


def normalize_value(spec: FieldSpec, value: Any) -> Any:
    """One value in canonical form: ints, strings, ``"12.30"``, bools, UTC ISO datetimes.

    >>> normalize_value(FieldSpec("price", "decimal"), 19.9)
    '19.90'
    >>> normalize_value(FieldSpec("at", "datetime"), "2026-01-02 03:04:05.000006")
    '2026-01-02T03:04:05.000006Z'
    >>> normalize_value(FieldSpec("is_active", "bool"), 1)
    True
    """
    if value is None:
        return None
    try:
        return _NORMALIZERS[spec.kind](value)
    except (ValueError, TypeError, InvalidOperation):
        raise BadEvent(f"field {spec.name}: {value!r} is not a valid {spec.kind}") from None


def _decimal(value: Any) -> str:
    number = Decimal(str(value)) if not isinstance(value, Decimal) else value
    return str(number.quantize(CENT, rounding=ROUND_HALF_EVEN))


def _datetime(value: Any) -> str:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    # Naive values come from SQLite, which Django fills with UTC when USE_TZ is on.
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "t", "yes")
    return bool(value)


def _float(value: Any) -> float:
    return round(float(value), 6)


_NORMALIZERS: dict[str, Any] = {
    "int": int, "str": str, "decimal": _decimal, "bool": _bool, "datetime": _datetime,
    "float": _float,
}


def normalize_row(spec: TableSpec, row: Mapping[str, Any]) -> dict[str, Any]:
    """The spec's fields of ``row`` in canonical form (missing fields are an error)."""
    out: dict[str, Any] = {}
    for fld in spec.fields:
        if fld.name not in row:
            raise BadEvent(f"{spec.aggregate_type}: row has no field {fld.name!r}")
        out[fld.name] = normalize_value(fld, row[fld.name])
    return out


def row_digest(key: int, fields: Mapping[str, Any]) -> str:
    """A short stable digest of one normalised row and its key."""
    text = json.dumps([key, fields], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RangeSummary:
    """How many rows a key range holds and one digest over all of them."""

    start: int
    count: int
    digest: str


def summarize(digests: Iterable[tuple[int, str]], range_size: int) -> dict[int, RangeSummary]:
    """Group ``(key, row digest)`` pairs by key range ``[k*size, (k+1)*size)``.

    >>> s = summarize([(1, "a"), (2, "b"), (1500, "c")], 1000)
    >>> [(r.start, r.count) for r in s.values()]
    [(0, 2), (1000, 1)]
    """
    grouped: dict[int, list[tuple[int, str]]] = {}
    for key, digest in digests:
        grouped.setdefault(key // range_size * range_size, []).append((key, digest))
    out: dict[int, RangeSummary] = {}
    for start in sorted(grouped):
        items = sorted(grouped[start])
        joined = "|".join(f"{k}:{d}" for k, d in items)
        out[start] = RangeSummary(start, len(items), hashlib.sha256(joined.encode()).hexdigest())
    return out


def differing_ranges(
    left: Mapping[int, RangeSummary], right: Mapping[int, RangeSummary]
) -> list[int]:
    """The range starts whose count or digest differ (present on one side only counts)."""
    return sorted(
        start for start in set(left) | set(right) if left.get(start) != right.get(start)
    )


@dataclass(frozen=True)
class KeyDiff:
    """The keys of one range that are missing, extra or different on the service side."""

    missing: tuple[int, ...]
    extra: tuple[int, ...]
    different: tuple[int, ...]


def diff_keys(source: Mapping[int, str], target: Mapping[int, str]) -> KeyDiff:
    """Compare ``key -> digest`` maps: source is the owner, target the copy.

    >>> diff_keys({1: "a", 2: "b"}, {2: "x", 3: "c"})
    KeyDiff(missing=(1,), extra=(3,), different=(2,))
    """
    return KeyDiff(
        missing=tuple(sorted(set(source) - set(target))),
        extra=tuple(sorted(set(target) - set(source))),
        different=tuple(sorted(k for k in set(source) & set(target) if source[k] != target[k])),
    )
