"""The relay: read a producer's outbox, deliver in order, at least once, and report lag.

It keeps no state of its own: on start it asks the consumer where the stream is (the
consumer saves the position in the same transaction as the events it applies), so a
killed relay restarts exactly where the consumer's data is. Events between that position
and what was really applied are delivered again and recognised as duplicates by event id.
A consumer that is down or refuses a batch is retried with exponential backoff (capped,
with jitter); the relay never skips an event the consumer refused.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from extracted.sync.cursor import DeliveryCursor
from extracted.sync.delivery import EventsEndpoint
from extracted.sync.errors import DeliveryFailed, SyncError
from extracted.sync.events import OutboxEvent
from extracted.sync.outbox import OutboxTable


@dataclass(frozen=True)
class RelayOptions:
    """How the relay runs (every field is a CLI option of ``strangler relay``)."""

    batch_size: int = 200
    poll_interval: float = 0.2
    hole_grace: float = 5.0
    min_backoff: float = 0.1
    max_backoff: float = 5.0
    once: bool = False
    max_attempts_once: int = 5
    status_file: Path | None = None
    metrics_file: Path | None = None
    status_every: float = 1.0
    stop_at: int | None = None  # stop once every position up to this one is delivered
    dead_letters: bool = True  # ask the consumer for its dead letters (status, --check)


@dataclass
class RelayStatus:
    """Counters and lag, as ``--json`` prints them and ``--status-file`` keeps them."""

    stream: str
    state: str = "starting"
    position: int = 0
    head: int = 0
    lag_events: int = 0
    lag_seconds: float = 0.0
    delivered: int = 0
    applied: int = 0
    duplicates: int = 0
    stale: int = 0
    batches: int = 0
    failures: int = 0
    holes_skipped: int = 0
    dead_letters: int = 0
    stuck_aggregates: list[str] = field(default_factory=list)
    last_error: str = ""
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    events_per_second: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The status as a JSON object."""
        return asdict(self)


@dataclass
class Clock:
    """Time and sleep, injected so tests can run the loop without waiting."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    wall: Callable[[], datetime] = lambda: datetime.now(UTC)


class Relay:
    """One stream from one outbox table to one consumer endpoint."""

    def __init__(self, outbox: OutboxTable, endpoint: EventsEndpoint, options: RelayOptions,
                 clock: Clock | None = None) -> None:
        self.outbox, self.endpoint, self.options = outbox, endpoint, options
        self.clock = clock or Clock()
        self.status = RelayStatus(stream=endpoint.stream)
        self.cursor = DeliveryCursor(hole_grace=options.hole_grace)
        self.stopping = False
        self._backoff = options.min_backoff
        self._started = self.clock.now()
        self._last_status_write = 0.0
        self._last_letters_check = -1e9
        self._saved = 0

    def run(self) -> RelayStatus:
        """Deliver until stopped (or, with ``once``, until caught up); return the status."""
        resumed = self._resume()
        attempts = 0
        while resumed and not self.stopping:
            if self.options.stop_at is not None and self.cursor.low_water >= self.options.stop_at:
                break
            try:
                progressed = self.step()
                attempts, self._backoff = 0, self.options.min_backoff
            except DeliveryFailed as exc:
                attempts += 1
                self._failed(exc)
                if self.options.once and attempts >= self.options.max_attempts_once:
                    break
                continue
            if not progressed:
                self._refresh_lag()
                if self.options.once and not self.cursor.has_holes:
                    break
                self.clock.sleep(self.options.poll_interval)
        self._refresh_lag()
        self.status.state = "stopped" if self.stopping else self.status.state
        self._write_status(force=True)
        return self.status

    def _resume(self) -> bool:
        """Ask the consumer where to start; False when ``once`` gave up on it."""
        while not self.stopping:
            try:
                self.cursor.low_water = self._saved = self.endpoint.position()
                self.status.position = self.cursor.low_water
                self.status.state = "running"
                return True
            except DeliveryFailed as exc:
                self._failed(exc)
                if self.options.once and self.status.failures >= self.options.max_attempts_once:
                    return False
        return False

    def step(self) -> bool:
        """Fetch and deliver one batch; True when something was delivered."""
        before = self.outbox.write_horizon()
        events = self._fetch()
        horizon = None
        if before is not None:
            after = self.outbox.write_horizon() if self._may_hole(events) else before
            horizon = (before[0], (after or before)[1])
        if not events:
            self.cursor.advance(self.clock.now(), horizon)
            if self.cursor.low_water > self._saved:
                # The mark stepped over a hole: tell the consumer, so a restart starts there.
                self._saved = self.endpoint.deliver([], self.cursor.low_water).position
            self.status.position = self.cursor.low_water
            return False
        positions = [e.position for e in events]
        position = self.cursor.preview(positions, self.clock.now(), horizon)
        result = self.endpoint.deliver(events, position)
        self._saved = result.position
        self.cursor.mark(positions, self.clock.now(), horizon)
        self._count(events, result.applied, result.duplicates, result.stale)
        if result.dead_letters:
            self._last_letters_check = -1e9  # new dead letters: report them at once
        return True

    def _may_hole(self, events: list[OutboxEvent]) -> bool:
        """Whether this fetch may reveal a hole (then the horizon is read again after it)."""
        if self.cursor.has_holes:
            return True
        expected = range(self.cursor.top + 1, self.cursor.top + 1 + len(events))
        return [e.position for e in events] != list(expected)

    def _fetch(self) -> list[OutboxEvent]:
        batch = self.options.batch_size
        if self.cursor.has_holes:
            # Holes may have filled in since: look below the top first.
            filled = self.outbox.fetch(self.cursor.low_water, batch, upto=self.cursor.top)
            late = [e for e in filled if e.position in self.cursor.pending([e.position])]
            if late:
                return late
        return self.outbox.fetch(self.cursor.top, batch)

    def _count(self, events: list[OutboxEvent], applied: int, duplicates: int,
               stale: int) -> None:
        s = self.status
        s.delivered += len(events)
        s.applied, s.duplicates, s.stale = s.applied + applied, s.duplicates + duplicates, (
            s.stale + stale)
        s.batches += 1
        s.position, s.holes_skipped = self.cursor.low_water, self.cursor.holes_skipped
        s.state = "running"
        s.last_error = ""
        elapsed = max(self.clock.now() - self._started, 1e-9)
        s.events_per_second = round(s.delivered / elapsed, 1)
        if events[-1].occurred_at:
            s.lag_seconds = _age(events[-1].occurred_at, self.clock.wall())
        self._write_status()

    def _failed(self, exc: DeliveryFailed) -> None:
        self.status.failures += 1
        self.status.state = "backing_off"
        self.status.last_error = str(exc)
        try:  # the lag keeps growing while the consumer refuses: report it, not a stale 0
            self._refresh_lag()
        except SyncError:
            pass
        self._write_status()
        delay = self._backoff * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not crypto
        self.clock.sleep(delay)
        self._backoff = min(self._backoff * 2, self.options.max_backoff)

    def _refresh_lag(self) -> None:
        s = self.status
        s.head = self.outbox.head()
        s.position, s.holes_skipped = self.cursor.low_water, self.cursor.holes_skipped
        s.lag_events = max(0, self.outbox.count_after(self.cursor.top))
        self._refresh_dead_letters()
        if s.lag_events and s.state == "backing_off":
            oldest = self.outbox.fetch(self.cursor.top, 1)
            if oldest and oldest[0].occurred_at:
                s.lag_seconds = _age(oldest[0].occurred_at, self.clock.wall())
        if s.lag_events == 0:
            s.lag_seconds = 0.0
            s.state = "caught_up" if s.state != "backing_off" else s.state
        if s.stuck_aggregates and s.state == "caught_up":
            s.state = "stuck"
        self._write_status()

    def _refresh_dead_letters(self) -> None:
        """Ask the consumer for its open dead letters (at most every ``status_every``)."""
        now = self.clock.now()
        if not self.options.dead_letters or (
                now - self._last_letters_check < self.options.status_every):
            return
        self._last_letters_check = now
        fetch = getattr(self.endpoint, "dead_letters", None)
        try:
            letters = fetch() if fetch is not None else None
        except DeliveryFailed:
            return  # the consumer is down: the delivery loop reports that
        if letters is None:
            return
        self.status.dead_letters = len(letters)
        self.status.stuck_aggregates = sorted(
            {f"{x['aggregate_type']}:{x['aggregate_id']}" for x in letters})

    def _write_status(self, force: bool = False) -> None:
        target, metrics = self.options.status_file, self.options.metrics_file
        now = self.clock.now()
        if (target is None and metrics is None) or (
                not force and now - self._last_status_write < self.options.status_every):
            return
        self._last_status_write = now
        if target is not None:
            write_json_atomically(target, self.status.to_json())
        if metrics is not None:
            write_text_atomically(metrics, prometheus_text(self.status))


def check_lag(outbox: OutboxTable, endpoint: EventsEndpoint,
              wall: Callable[[], datetime] = lambda: datetime.now(UTC)) -> RelayStatus:
    """How far the consumer is behind the outbox, without delivering anything.

    ``lag_seconds`` here is the age of the oldest event above the consumer's position.
    """
    status = RelayStatus(stream=endpoint.stream, state="checked")
    status.position = endpoint.position()
    status.head = outbox.head()
    status.lag_events = outbox.count_after(status.position)
    letters = endpoint.dead_letters()
    if letters:
        status.dead_letters = len(letters)
        status.stuck_aggregates = sorted(
            {f"{x['aggregate_type']}:{x['aggregate_id']}" for x in letters})
        status.state = "stuck"
    oldest = outbox.fetch(status.position, 1)
    if oldest and oldest[0].occurred_at:
        status.lag_seconds = _age(oldest[0].occurred_at, wall())
    return status


def _age(occurred_at: str, now: datetime) -> float:
    try:
        moment = datetime.fromisoformat(occurred_at.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(max(0.0, (now - moment).total_seconds()), 3)


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to a temp file in the same directory, then rename over ``path``."""
    write_text_atomically(path, json.dumps(data, indent=2, sort_keys=True))


def write_text_atomically(path: Path, text: str) -> None:
    """Write text to a temp file in the same directory, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


GAUGES = ("position", "head", "lag_events", "lag_seconds", "dead_letters")
COUNTERS = ("delivered", "applied", "duplicates", "stale", "failures", "holes_skipped")


def prometheus_text(status: RelayStatus) -> str:
    """The status in Prometheus' text format (for node_exporter's textfile collector).

    >>> print(prometheus_text(RelayStatus(stream="m", lag_events=3,
    ...       stuck_aggregates=["store.Brand:1"])).splitlines()[5])
    strangler_relay_lag_events{stream="m"} 3
    """
    label = f'stream="{status.stream}"'
    lines: list[str] = []
    for kind, names in (("gauge", GAUGES), ("counter", COUNTERS)):
        for name in names:
            metric = f"strangler_relay_{name}" + ("_total" if kind == "counter" else "")
            lines += [f"# TYPE {metric} {kind}", f"{metric}{{{label}}} {getattr(status, name)}"]
    lines.append("# TYPE strangler_relay_stuck_aggregate gauge")
    lines += [f'strangler_relay_stuck_aggregate{{{label},aggregate="{key}"}} 1'
              for key in status.stuck_aggregates]
    return "\n".join(lines) + "\n"
