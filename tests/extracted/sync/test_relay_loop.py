"""The relay loop with an in-memory outbox and consumer (fakes: no sockets, no clock)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from extracted.sync.delivery import BatchResult
from extracted.sync.errors import DeliveryFailed
from extracted.sync.events import OutboxEvent
from extracted.sync.relay import Clock, Relay, RelayOptions


def _event(position: int) -> OutboxEvent:
    return OutboxEvent(id=f"e{position}", position=position, aggregate_type="store.Brand",
                       aggregate_id=str(position % 3), sequence=position, type="updated",
                       payload={}, occurred_at="")


class FakeOutbox:
    def __init__(self, positions: list[int]) -> None:
        self.events = [_event(p) for p in positions]

    def fetch(self, after: int, limit: int, upto: int | None = None) -> list[OutboxEvent]:
        found = [e for e in self.events if e.position > after
                 and (upto is None or e.position <= upto)]
        return found[:limit]

    def write_horizon(self) -> None:  # like SQLite: holes settle after the grace
        return None

    def head(self) -> int:
        return max((e.position for e in self.events), default=0)

    def count_after(self, position: int) -> int:
        return sum(1 for e in self.events if e.position > position)


class FakeConsumer:
    """Refuses the first ``failures`` calls, then applies (and remembers) everything."""

    stream = "monolith"

    def __init__(self, failures: int = 0, position: int = 0) -> None:
        self.failures, self.saved = failures, position
        self.applied: list[int] = []

    def position(self) -> int:
        return self.saved

    def deliver(self, events: Sequence[OutboxEvent], position: int) -> BatchResult:
        if self.failures:
            self.failures -= 1
            raise DeliveryFailed("service unreachable")
        fresh = [e.position for e in events if e.position not in self.applied]
        self.applied += fresh
        self.saved = max(self.saved, position)
        return BatchResult(len(fresh), len(events) - len(fresh), 0, self.saved)


class FakeClock(Clock):
    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []
        super().__init__(now=lambda: self.t, sleep=self._sleep)

    def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def _relay(outbox: Any, consumer: Any, **options: Any) -> tuple[Relay, FakeClock]:
    clock = FakeClock()
    return Relay(outbox, consumer, RelayOptions(once=True, **options), clock), clock


def test_delivers_everything_in_order_in_batches() -> None:
    consumer = FakeConsumer()
    relay, _ = _relay(FakeOutbox(list(range(1, 12))), consumer, batch_size=4)
    status = relay.run()
    assert consumer.applied == list(range(1, 12))
    assert (status.batches, status.position, status.lag_events) == (3, 11, 0)
    assert status.state == "caught_up"


def test_resumes_from_the_consumers_position() -> None:
    consumer = FakeConsumer(position=6)
    relay, _ = _relay(FakeOutbox(list(range(1, 10))), consumer)
    relay.run()
    assert consumer.applied == [7, 8, 9]


def test_a_refused_batch_is_retried_with_growing_capped_backoff_never_skipped() -> None:
    consumer = FakeConsumer(failures=4)
    relay, clock = _relay(FakeOutbox([1, 2, 3]), consumer, min_backoff=0.1, max_backoff=0.3,
                          max_attempts_once=10)
    status = relay.run()
    assert consumer.applied == [1, 2, 3]
    assert status.failures == 4
    backoffs = clock.sleeps[:4]
    assert all(0.05 <= b <= 0.3 for b in backoffs)
    assert backoffs[2] >= 0.1  # grew from 0.1 (jittered down to half at most)


def test_once_gives_up_after_its_attempts_and_reports_it() -> None:
    consumer = FakeConsumer(failures=100)
    relay, _ = _relay(FakeOutbox([1, 2]), consumer, max_attempts_once=3)
    status = relay.run()
    assert consumer.applied == []
    assert status.state == "backing_off"
    assert "unreachable" in status.last_error
    assert status.lag_events == 2


def test_a_hole_is_waited_for_then_stepped_over() -> None:
    # given position 3 missing (a rolled-back or still running transaction)
    consumer = FakeConsumer()
    relay, clock = _relay(FakeOutbox([1, 2, 4, 5]), consumer, hole_grace=1.0,
                          poll_interval=0.25)
    status = relay.run()
    # then 4 and 5 are delivered at once, and the saved position passes 3 after the grace
    assert consumer.applied == [1, 2, 4, 5]
    assert status.holes_skipped == 1
    assert consumer.saved == 5
    assert clock.t >= 1.0
