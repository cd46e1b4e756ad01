"""The relay over RabbitMQ: outbox -> broker (publisher confirms) -> consumer (manual acks).

The same contract as the HTTP transport (contract 5: delivered at least once, applied at most
once, one poison event holds back only its own aggregate), carried by AMQP 0-9-1:

* **Partitions keep each aggregate's order.** An event goes to the partition queue
  ``<prefix>.<stream>.p<n>``, ``n = crc32("type:id") % partitions``. Each queue is durable,
  its messages persistent, and it has ``x-single-active-consumer``: however many consumers
  run, one at a time takes a partition, in queue order. The relay publishes one message per
  partition per batch: the partition's events of the batch, in outbox order, and the batch's
  low-water ``position`` (every event at or below it has been confirmed by the broker).
* **Publisher confirms.** ``deliver`` returns only when the broker has confirmed every
  message of the batch; then the position is published to ``<prefix>.<stream>.cursor`` (a
  queue of length one) and a restarted relay resumes from there. The cursor shares the
  broker's fate with the messages: a broker that lost its queues lost the cursor too, and the
  relay publishes again from the outbox's start (duplicates, recognised by event id).
* **Manual acks after commit.** The consumer applies the messages it received together in
  one transaction (events, dead letters, the partitions' positions), then acks them.
  Killed between the two, the messages come again and their events are duplicates. An
  apply that fails (database away) drops the channel: the broker requeues every unacked
  message in its original order; the consumer backs off and reconnects. A message that is
  not even JSON is rejected to ``<prefix>.<stream>.unreadable`` (dead-lettered by the
  broker, never dropped).
* **Prune acknowledgements.** The consumer keeps one position per partition; the stream's
  position (what ``relay --check``, ``outbox prune`` and the cutover read over HTTP) is the
  lowest of them, moved in the same transaction.

Nothing here imports Django: the consumer is given the apply function (the catalog's
``apply_partition``).
"""

from __future__ import annotations

import json
import random
import sys
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlparse, urlunparse

from extracted.sync.delivery import BatchResult
from extracted.sync.errors import BadEvent, DeliveryFailed, SyncError
from extracted.sync.events import OutboxEvent, event_from_json, poison_event

DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
DEFAULT_PARTITIONS = 4
MESSAGE_FORMAT = 1


def partition_of(aggregate_type: str, aggregate_id: str, partitions: int) -> int:
    """The partition of one aggregate: stable across processes and hosts (not ``hash``).

    >>> partition_of("store.Product", "7", 4), partition_of("store.Product", "7", 4)
    (2, 2)
    """
    return zlib.crc32(f"{aggregate_type}:{aggregate_id}".encode()) % partitions


def redact_url(url: str) -> str:
    """The broker URL without its password.

    >>> redact_url("amqp://guest:secret@127.0.0.1:5672/%2F")
    'amqp://guest:***@127.0.0.1:5672/%2F'
    """
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    netloc = f"{parsed.username}:***@{parsed.hostname}" + (
        f":{parsed.port}" if parsed.port else "")
    return urlunparse(parsed._replace(netloc=netloc))


@dataclass(frozen=True)
class Broker:
    """Where one stream's queues are: broker URL, queue prefix, stream, partition count."""

    url: str = DEFAULT_BROKER_URL
    stream: str = "monolith"
    partitions: int = DEFAULT_PARTITIONS
    prefix: str = "strangler"

    def __post_init__(self) -> None:
        if urlparse(self.url).scheme not in ("amqp", "amqps"):
            raise SyncError(f"broker URL {redact_url(self.url)!r}: use amqp://user:password@"
                            "host:5672/vhost (--broker-url or STRANGLER_BROKER_URL)")
        if not 1 <= self.partitions <= 256:
            raise SyncError(f"partitions: {self.partitions} is not between 1 and 256 "
                            "(--partitions; relay and consumer must agree)")
        if not self.stream or len(self.stream) > 48:
            raise SyncError(f"stream: {self.stream!r} must have 1 to 48 characters (--stream)")

    def queue(self, partition: int) -> str:
        """The queue of one partition."""
        return f"{self.prefix}.{self.stream}.p{partition}"

    @property
    def cursor_queue(self) -> str:
        """The queue holding the relay's last confirmed position (length one)."""
        return f"{self.prefix}.{self.stream}.cursor"

    @property
    def unreadable_queue(self) -> str:
        """Where the broker dead-letters messages the consumer could not read."""
        return f"{self.prefix}.{self.stream}.unreadable"

    def queues(self) -> list[str]:
        """Every queue of the stream (what ``declare`` creates)."""
        return [*(self.queue(n) for n in range(self.partitions)), self.cursor_queue,
                self.unreadable_queue]


def connect(broker: Broker, timeout: float = 5.0) -> Any:
    """A blocking connection to the broker, or ``DeliveryFailed`` naming it."""
    import pika

    params = pika.URLParameters(broker.url)
    params.socket_timeout = timeout
    params.blocked_connection_timeout = 30
    params.heartbeat = 30
    params.connection_attempts = 1
    try:
        return pika.BlockingConnection(params)
    except Exception as exc:  # noqa: BLE001 - pika raises many unrelated types
        raise DeliveryFailed(f"broker {redact_url(broker.url)} unreachable: "
                             f"{exc.__class__.__name__}: {_one_line(exc)}") from None


def declare(channel: Any, broker: Broker) -> None:
    """Declare the stream's durable queues (idempotent while the arguments agree)."""
    for n in range(broker.partitions):
        channel.queue_declare(broker.queue(n), durable=True, arguments={
            "x-single-active-consumer": True, "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": broker.unreadable_queue})
    channel.queue_declare(broker.cursor_queue, durable=True,
                          arguments={"x-max-length": 1, "x-overflow": "drop-head"})
    channel.queue_declare(broker.unreadable_queue, durable=True)


def delete_queues(broker: Broker) -> None:
    """Delete the stream's queues (tests; a stream retired for good)."""
    connection = connect(broker)
    try:
        channel = connection.channel()
        for name in broker.queues():
            channel.queue_delete(name)
    finally:
        connection.close()


def encode_batch(broker: Broker, partition: int, events: Sequence[OutboxEvent],
                 position: int) -> bytes:
    """One partition's share of a batch, as the message body."""
    return json.dumps({"format": MESSAGE_FORMAT, "stream": broker.stream,
                       "partition": partition, "partitions": broker.partitions,
                       "position": position, "events": [e.to_json() for e in events]},
                      separators=(",", ":")).encode()


@dataclass(frozen=True)
class PartitionBatch:
    """A decoded message: one partition's events of one relay batch."""

    stream: str
    partition: int
    partitions: int
    position: int
    events: list[OutboxEvent]


def decode_batch(body: bytes) -> PartitionBatch:
    """The message body as a batch; ``BadEvent`` when the envelope cannot be read.

    A broken *event* inside a readable envelope becomes a poison event (dead-lettered by the
    apply, holding only its aggregate), as over HTTP.
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadEvent(f"message body is not JSON ({_one_line(exc)})") from None
    if not isinstance(data, Mapping) or data.get("format") != MESSAGE_FORMAT:
        raise BadEvent(f"message: expected an object with format {MESSAGE_FORMAT}")
    try:
        header = (str(data["stream"]), int(data["partition"]), int(data["partitions"]),
                  int(data["position"]))
        raw = list(data["events"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BadEvent(f"message: missing or bad field {_one_line(exc)}") from None
    return PartitionBatch(*header, [_event_or_poison(e, f"events[{i}]")
                                    for i, e in enumerate(raw)])


def _event_or_poison(data: Any, where: str) -> OutboxEvent:
    try:
        return event_from_json(data, where)
    except BadEvent as exc:
        return poison_event(data, str(exc))


class AmqpEndpoint:
    """The relay's side: publish batches with confirms; the same face as ``EventsEndpoint``.

    ``Relay`` drives it unchanged: ``position`` is the last position the broker confirmed
    (the cursor queue), ``deliver`` publishes and waits for the confirms. It cannot see the
    consumer's counts or dead letters (``relay --check`` and ``relay dead-letters`` ask the
    consumer over HTTP).

    ``start``: where to begin when the broker has no cursor yet (a new broker, a new queue
    prefix, a switch from the HTTP transport): the relay passes the consumer's own position
    (asked over HTTP), so events the service already applied are not published again. When
    that cannot be asked, it begins at 0 and every old event arrives as a duplicate.
    """

    def __init__(self, broker: Broker, start: Callable[[], int] | None = None) -> None:
        self.broker = broker
        self.stream = broker.stream
        self.start = start
        self._connection: Any = None
        self._channel: Any = None

    def _open(self) -> Any:
        if self._channel is not None and self._channel.is_open and self._alive():
            return self._channel
        self.close()
        self._connection = connect(self.broker)
        try:
            channel = self._connection.channel()
            channel.confirm_delivery()
            declare(channel, self.broker)
        except Exception as exc:  # noqa: BLE001
            self.close()
            raise DeliveryFailed(_broker_error(self.broker, exc)) from None
        self._channel = channel
        return channel

    def _alive(self) -> bool:
        """Serve heartbeats and notice a connection lost while idle (then open a new one).

        A blocking connection only does I/O when called: a relay that found nothing to
        publish for a while would otherwise learn of a lost connection from a failed batch.
        """
        try:
            self._connection.process_data_events(time_limit=0)
        except Exception:  # noqa: BLE001 - whatever broke it, a new connection follows
            return False
        return bool(self._channel.is_open)

    def position(self) -> int:
        """The last position the broker confirmed (0 for a new stream)."""
        channel = self._open()
        try:
            method, _, body = channel.basic_get(self.broker.cursor_queue, auto_ack=False)
            if method is None:
                return self._start()
            channel.basic_nack(method.delivery_tag, requeue=True)
            return int(json.loads(body)["position"])
        except (ValueError, KeyError, TypeError):
            raise DeliveryFailed(f"{self.broker.cursor_queue}: the cursor message is not "
                                 '{"position": N}; delete that queue to start again') from None
        except Exception as exc:  # noqa: BLE001
            self.close()
            raise DeliveryFailed(_broker_error(self.broker, exc)) from None

    def _start(self) -> int:
        if self.start is None:
            return 0
        try:
            return max(0, int(self.start()))
        except (SyncError, ValueError) as exc:
            _to_stderr(f"relay: {self.broker.cursor_queue} has no position yet and the consumer "
                       f"could not be asked ({exc}); starting at 0: events it already has "
                       "arrive as duplicates")
            return 0

    def deliver(self, events: Sequence[OutboxEvent], position: int) -> BatchResult:
        """Publish one message per partition, wait for every confirm, then the cursor."""
        import pika

        by_partition: dict[int, list[OutboxEvent]] = {}
        for event in events:
            key = partition_of(event.aggregate_type, event.aggregate_id, self.broker.partitions)
            by_partition.setdefault(key, []).append(event)
        channel = self._open()
        persistent = pika.BasicProperties(delivery_mode=2, content_type="application/json")
        try:
            for n in range(self.broker.partitions):
                body = encode_batch(self.broker, n, by_partition.get(n, []), position)
                channel.basic_publish("", self.broker.queue(n), body, persistent,
                                      mandatory=True)
            channel.basic_publish("", self.broker.cursor_queue,
                                  json.dumps({"position": position}).encode(), persistent,
                                  mandatory=True)
        except Exception as exc:  # noqa: BLE001 - nack, unroutable, connection lost
            self.close()
            raise DeliveryFailed(_broker_error(self.broker, exc)) from None
        return BatchResult(applied=0, duplicates=0, stale=0, position=position)

    def dead_letters(self) -> None:
        """Kept by the consumer, not visible through the broker."""
        return

    def close(self) -> None:
        """Close the connection (quietly: it may be gone already)."""
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:  # noqa: BLE001, S110 - closing a broken connection
                pass


ApplyBatches = Callable[[Sequence[PartitionBatch]], Mapping[str, int]]


@dataclass
class ConsumerStatus:
    """What the consumer did, as ``catalog consume --json`` prints it."""

    stream: str
    messages: int = 0
    events: int = 0
    applied: int = 0
    duplicates: int = 0
    stale: int = 0
    dead_letters: int = 0
    unreadable: int = 0
    failures: int = 0
    connections: int = 0
    last_error: str = ""
    positions: dict[int, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The status as a JSON object."""
        return asdict(self)


class _ApplyFailed(Exception):
    """The apply raised: drop the channel so the broker requeues in order."""


@dataclass(frozen=True)
class ConsumerOptions:
    """How the consumer runs (``strangler catalog consume`` options)."""

    prefetch: int = 8
    min_backoff: float = 0.1
    max_backoff: float = 5.0
    idle_exit: float | None = None  # stop after this many seconds without a message (tests)


class AmqpConsumer:
    """Take every partition's messages; apply those received together in one transaction.

    The messages one read of the socket delivers (at most ``prefetch`` per partition) are
    applied as one transaction, then acked with one ``multiple`` ack: on SQLite a commit is
    an fsync, so one per message would cost the transport most of its throughput.
    """

    def __init__(self, broker: Broker, apply: ApplyBatches,
                 options: ConsumerOptions | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.broker, self.apply = broker, apply
        self.options = options or ConsumerOptions()
        self.status = ConsumerStatus(stream=broker.stream)
        self.stopping = False
        self._log = log or _to_stderr
        self._last_message = time.monotonic()
        self._pending: list[tuple[int, PartitionBatch]] = []

    def run(self) -> ConsumerStatus:
        """Consume until stopped (SIGTERM sets ``stopping``); reconnect after failures."""
        backoff = self.options.min_backoff
        while not self.stopping and not self._idle():
            try:
                self._consume()
                backoff = self.options.min_backoff
            except (DeliveryFailed, _ApplyFailed) as exc:
                self.status.failures += 1
                self.status.last_error = str(exc)
                self._log(f"consume: {exc}; retrying in {backoff:.1f} s")
                time.sleep(backoff * (0.5 + random.random() / 2))  # noqa: S311 - jitter
                backoff = min(backoff * 2, self.options.max_backoff)
        return self.status

    def _idle(self) -> bool:
        limit = self.options.idle_exit
        return limit is not None and time.monotonic() - self._last_message > limit

    def _consume(self) -> None:
        connection = connect(self.broker)
        self.status.connections += 1
        try:
            channel = connection.channel()
            declare(channel, self.broker)
            channel.basic_qos(prefetch_count=self.options.prefetch)
            for n in range(self.broker.partitions):
                channel.basic_consume(self.broker.queue(n), self._on_message, auto_ack=False)
            while not self.stopping and not self._idle():
                connection.process_data_events(time_limit=0.2)
                if self._pending:
                    self._apply_pending(channel)
        except _ApplyFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - connection lost, channel closed, ...
            raise DeliveryFailed(_broker_error(self.broker, exc)) from None
        finally:
            self._pending = []  # unacked: the broker requeues them, in order
            if connection.is_open:
                try:
                    connection.close()  # unacked messages go back to their queues, in order
                except Exception:  # noqa: BLE001, S110
                    pass

    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        self._last_message = time.monotonic()
        try:
            batch = decode_batch(body)
        except BadEvent as exc:
            self._log(f"consume: {method.routing_key}: {exc}; rejected to "
                      f"{self.broker.unreadable_queue}")
            self.status.unreadable += 1
            channel.basic_reject(method.delivery_tag, requeue=False)
            return
        if batch.partitions != self.broker.partitions or batch.stream != self.broker.stream:
            raise _ApplyFailed(
                f"{method.routing_key}: message of stream {batch.stream!r} with "
                f"{batch.partitions} partitions, this consumer has {self.broker.stream!r} and "
                f"{self.broker.partitions}: give relay and consumer the same --partitions")
        self._pending.append((method.delivery_tag, batch))

    def _apply_pending(self, channel: Any) -> None:
        batches = [batch for _, batch in self._pending]
        try:
            counts = self.apply(batches)
        except Exception as exc:  # noqa: BLE001 - the database is away, a bug: never acked
            names = sorted({self.broker.queue(b.partition) for b in batches})
            raise _ApplyFailed(f"apply failed on {', '.join(names)}: "
                               f"{exc.__class__.__name__}: {_one_line(exc)}") from None
        channel.basic_ack(self._pending[-1][0], multiple=True)
        self._pending = []
        self._count(batches, counts)

    def _count(self, batches: Sequence[PartitionBatch], counts: Mapping[str, int]) -> None:
        s = self.status
        s.messages += len(batches)
        s.events += sum(len(b.events) for b in batches)
        s.applied += counts.get("applied", 0)
        s.duplicates += counts.get("duplicates", 0)
        s.stale += counts.get("stale", 0)
        s.dead_letters += counts.get("dead_letters", 0)
        for batch in batches:
            s.positions[batch.partition] = batch.position


def _broker_error(broker: Broker, exc: BaseException) -> str:
    if isinstance(exc, DeliveryFailed):
        return str(exc)
    name = exc.__class__.__name__
    detail = _one_line(exc) or "connection lost"
    if "PRECONDITION_FAILED" in detail:
        detail += (f"; the queues of stream {broker.stream!r} exist with other arguments "
                   "(another --partitions?): use another --queue-prefix or delete them")
    return f"broker {redact_url(broker.url)}: {name}: {detail}"


def _to_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
