"""Contract 5: the outbox event, as it travels from a producer's outbox to a consumer.

An event is one change of one aggregate (one row of a context's model, or one derived fact
such as a product's stock signal)::

    {"id": "5b0c…", "position": 42, "aggregate_type": "store.Product", "aggregate_id": "7",
     "sequence": 3, "type": "updated", "payload": {"sku": "…", …},
     "occurred_at": "2026-11-26T10:00:00.000000Z", "request_id": "r-7f3a…"}

``id`` is unique per event (a UUID); ``sequence`` counts the changes of one aggregate from 1
with no holes, so a consumer can tell a stale or a missing event; ``position`` is the row id in
the producer's outbox table: it orders the whole stream and is the relay's cursor. ``payload``
is the full state after the change (``created``/``updated``) or the last state (``deleted``),
so applying an event never needs the ones before it, only the ordering guarantee.
``request_id`` (format 3) names the HTTP request whose transaction wrote the event (the
``X-Request-ID`` the proxy gave it; empty for changes made outside a request): the shadow
comparison matches a service's rolled-back events with the monolith's by it (docs/shadow.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from extracted.sync.errors import BadEvent

FORMAT = 3
# Format 1: created, updated, deleted. Format 2 adds the repair types (full state written
# by ``strangler reconcile --repair``: applied over a sequence gap, superseding what is
# missing) and ``poison`` (a row the relay could not read, passed on to be dead-lettered).
# Format 3 adds ``request_id`` (optional; "" when absent, as in formats 1 and 2).
EVENT_TYPES = ("created", "updated", "deleted")
REPAIR_TYPES = ("repaired", "repair_deleted")
TYPES_BY_FORMAT = {1: EVENT_TYPES, 2: EVENT_TYPES + REPAIR_TYPES, 3: EVENT_TYPES + REPAIR_TYPES}
MAX_REQUEST_ID = 64  # the outbox column's width


@dataclass(frozen=True)
class OutboxEvent:
    """One change of one aggregate (contract 5)."""

    id: str
    position: int
    aggregate_type: str
    aggregate_id: str
    sequence: int
    type: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    occurred_at: str = ""
    poison: str = ""
    request_id: str = ""

    @property
    def is_repair(self) -> bool:
        """A repair's full state: it may follow a gap and supersedes what is missing."""
        return self.type in REPAIR_TYPES

    @property
    def is_delete(self) -> bool:
        """The aggregate is gone after this event."""
        return self.type in ("deleted", "repair_deleted")

    @property
    def aggregate_key(self) -> tuple[str, str]:
        """``(aggregate_type, aggregate_id)``: the unit of ordering."""
        return (self.aggregate_type, self.aggregate_id)

    def to_json(self) -> dict[str, Any]:
        """The event as the JSON object the apply endpoints accept."""
        data = {
            "format": FORMAT, "id": self.id, "position": self.position,
            "aggregate_type": self.aggregate_type, "aggregate_id": self.aggregate_id,
            "sequence": self.sequence, "type": self.type, "payload": dict(self.payload),
            "occurred_at": self.occurred_at, "request_id": self.request_id,
        }
        if self.poison:
            data["poison"] = self.poison
        return data


def event_from_json(data: Any, where: str = "event") -> OutboxEvent:
    """Parse and validate one event object; errors name the field and the value.

    >>> event_from_json({"id": "e1", "position": 1, "aggregate_type": "store.Brand",
    ...     "aggregate_id": "3", "sequence": 1, "type": "created", "payload": {}}).sequence
    1
    >>> event_from_json({"id": "e1"})
    Traceback (most recent call last):
    ...
    extracted.sync.errors.BadEvent: event.position: missing (contract 5, see docs/data-sync.md)
    """
    if not isinstance(data, Mapping):
        raise BadEvent(f"{where}: expected a JSON object, got {type(data).__name__}")
    fmt = data.get("format", 1)
    if fmt not in TYPES_BY_FORMAT:
        raise BadEvent(f"{where}.format: {fmt!r} is not a format this consumer reads "
                       f"({', '.join(map(str, TYPES_BY_FORMAT))}); upgrade the consumer")
    if data.get("poison"):
        return poison_event(data, str(data["poison"]))
    needed = ("id", "position", "aggregate_type", "aggregate_id", "sequence", "type", "payload")
    for name in needed:
        if name not in data:
            raise BadEvent(f"{where}.{name}: missing (contract 5, see docs/data-sync.md)")
    payload = data["payload"]
    if isinstance(payload, str):
        payload = _json_object(payload, f"{where}.payload")
    if not isinstance(payload, Mapping):
        raise BadEvent(f"{where}.payload: expected an object, got {payload!r:.60}")
    if data["type"] not in TYPES_BY_FORMAT[fmt]:
        raise BadEvent(f"{where}.type: {data['type']!r} is not one of "
                       f"{', '.join(TYPES_BY_FORMAT[fmt])} (format {fmt})")
    return OutboxEvent(
        id=str(data["id"]), position=_int(data["position"], f"{where}.position"),
        aggregate_type=str(data["aggregate_type"]), aggregate_id=str(data["aggregate_id"]),
        sequence=_int(data["sequence"], f"{where}.sequence"), type=str(data["type"]),
        payload=dict(payload), occurred_at=_text(data.get("occurred_at", "")),
        request_id=_request_id(data.get("request_id"), fmt, where),
    )


def _request_id(value: Any, fmt: int, where: str) -> str:
    """The event's request id: "" before format 3 or when absent, else a short string.

    >>> _request_id("r-1", 3, "event"), _request_id("r-1", 2, "event"), _request_id(None, 3, "e")
    ('r-1', '', '')
    """
    if fmt < 3 or value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_REQUEST_ID:
        raise BadEvent(f"{where}.request_id: expected a string of at most {MAX_REQUEST_ID} "
                       f"characters, got {value!r:.80}")
    return value


def poison_event(data: Any, reason: str) -> OutboxEvent:
    """Whatever can be read of a broken event, carrying why it is broken.

    The consumer dead-letters it (and holds its aggregate, when one can be named) instead
    of refusing the whole batch: one poison event never stops the other aggregates.
    """
    raw = data if isinstance(data, Mapping) else {}

    def pick(name: str, default: Any) -> Any:
        value = raw.get(name, default)
        return value if isinstance(value, str | int) and not isinstance(value, bool) else default

    position = pick("position", 0)
    sequence = pick("sequence", 0)
    return OutboxEvent(
        id=str(pick("id", "")) or f"poison-{position}",
        position=int(position) if str(position).isdigit() else 0,
        aggregate_type=str(pick("aggregate_type", "")), aggregate_id=str(pick("aggregate_id", "")),
        sequence=int(sequence) if str(sequence).isdigit() else 0, type=str(pick("type", "")),
        payload={}, occurred_at=_text(raw.get("occurred_at", "")), poison=reason,
    )


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BadEvent(f"{where}: expected an integer, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise BadEvent(f"{where}: expected an integer, got {value!r}") from None


def _text(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _json_object(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadEvent(f"{where}: not valid JSON ({exc.msg} at char {exc.pos})") from None
