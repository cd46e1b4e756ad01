"""The relay over RabbitMQ: the machine's broker, the relay and consumer as real processes.

The producer is ``fake_shop.FakeShop`` (as in ``test_sync_processes.py``); the whole shop
under faults over RabbitMQ is ``test_amqp_jepsen.py``. Broker connections are cut with
``broker_link.BrokerLink`` (a TCP forwarder in front of the real broker).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from broker_link import BrokerLink, broker_url, link, needs_broker, queue_prefix
from conftest import STRANGLER, SYNC_TOKEN, CatalogServer, Process, base_env, relay_argv
from fake_shop import FakeShop
from test_sync_processes import Writer, reconcile

from extracted.sync.amqp import (
    AmqpConsumer,
    AmqpEndpoint,
    Broker,
    ConsumerOptions,
    decode_batch,
    delete_queues,
    encode_batch,
    partition_of,
)
from extracted.sync.database import Database
from extracted.sync.errors import BadEvent, DeliveryFailed, SyncError
from extracted.sync.events import OutboxEvent


def run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=base_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)


def event(position: int, key: str, sequence: int = 1) -> OutboxEvent:
    return OutboxEvent(id=f"e{position}", position=position, aggregate_type="store.Brand",
                       aggregate_id=key, sequence=sequence, type="updated",
                       payload={"name": f"b{key}", "slug": f"b-{key}", "country": "DE"})


# --- the pure parts ---------------------------------------------------------------------


def test_doctests_pass() -> None:
    import doctest

    import extracted.sync.amqp

    assert doctest.testmod(extracted.sync.amqp).failed == 0


def test_partition_keeps_an_aggregate_in_one_queue_and_spreads_the_rest() -> None:
    # given many aggregates, when each is placed twice, then always in the same partition
    keys = [("store.Product", str(n)) for n in range(400)]
    first = [partition_of(t, k, 4) for t, k in keys]
    assert first == [partition_of(t, k, 4) for t, k in keys]
    # and every partition gets a fair share
    assert all(60 < first.count(n) < 140 for n in range(4)), [first.count(n) for n in range(4)]


def test_a_batch_survives_the_wire_and_a_broken_event_becomes_poison() -> None:
    broker = Broker("amqp://guest:guest@127.0.0.1:5672/%2F", "monolith", 4)
    body = encode_batch(broker, 2, [event(5, "1"), event(6, "1", 2)], 6)
    batch = decode_batch(body)
    assert (batch.stream, batch.partition, batch.partitions, batch.position) == (
        "monolith", 2, 4, 6)
    assert [e.sequence for e in batch.events] == [1, 2]
    # a broken event inside a readable message is dead-lettered by the apply, not lost
    data = json.loads(body)
    data["events"][1].pop("sequence")
    poison = decode_batch(json.dumps(data).encode()).events[1]
    assert "sequence" in poison.poison
    assert poison.aggregate_key == ("store.Brand", "1")  # it holds its own aggregate only
    with pytest.raises(BadEvent, match="not JSON"):
        decode_batch(b"\xff{")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"url": "http://127.0.0.1:5672/"}, "broker URL 'http://127.0.0.1:5672/': use amqp://"),
    ({"partitions": 0}, "partitions: 0 is not between 1 and 256"),
    ({"stream": "x" * 49}, "must have 1 to 48 characters"),
])
def test_bad_broker_settings_are_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(SyncError, match=message):
        Broker(**kwargs)


# --- against the machine's RabbitMQ ----------------------------------------------------------


@pytest.fixture
def amqp() -> Iterator[tuple[BrokerLink, str]]:
    """A link to the broker and a queue prefix of this test's own (queues deleted after)."""
    prefix = queue_prefix()
    for forwarder in link():
        yield forwarder, prefix
    delete_queues(Broker(broker_url(), "monolith", 4, prefix))


def relay_amqp_argv(shop_url: str, url: str, prefix: str, *extra: str) -> list[str]:
    return [*STRANGLER, "relay", "--transport", "amqp", "--broker-url", url, "--queue-prefix",
            prefix, "--source-db", shop_url, "--stream", "monolith", "--poll-interval", "0.05",
            "--max-backoff", "0.5", "--hole-grace", "1", *extra]


def consume_argv(service_url: str, url: str, prefix: str, *extra: str) -> list[str]:
    return [*STRANGLER, "catalog", "consume", "--database-url", service_url, "--broker-url",
            url, "--queue-prefix", prefix, "--max-backoff", "0.5", *extra]


def wait_until_applied(server: CatalogServer, head: int, timeout: float = 60) -> dict[str, Any]:
    """Poll the consumer's stream position (over HTTP, as `relay --check` does)."""
    import httpx

    deadline, status = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        status = httpx.get(f"{server.url}/internal/events/", params={"stream": "monolith"},
                           headers={"Authorization": f"Bearer {SYNC_TOKEN}"}, timeout=5).json()
        if status["position"] >= head:
            return dict(status)
        time.sleep(0.2)
    raise AssertionError(f"the consumer did not reach {head}: {status}")


@needs_broker
@pytest.mark.slow
@pytest.mark.parametrize("databases", ["sqlite"], indirect=True)  # PostgreSQL: the jepsen run
def test_nothing_lost_or_applied_twice_when_relays_consumers_and_connections_die(
        databases: Any, tmp_path: Path, amqp: tuple[BrokerLink, str]) -> None:
    forwarder, prefix = amqp
    # given a shop with history, a service that took a backfill, a relay and a consumer
    shop_url, service_url = databases("shop"), databases("catalog")
    shop = FakeShop(shop_url)
    shop.create_schema()
    shop.populate(30)
    server = CatalogServer(service_url, tmp_path)
    server.migrate()
    server.start()
    relay = Process(relay_amqp_argv(shop_url, forwarder.url, prefix), base_env(),
                    tmp_path / "relay.log")
    # two consumers: the broker gives each partition to one of them, the other stands by
    consumers = [Process(consume_argv(service_url, forwarder.url, prefix), base_env(),
                         tmp_path / f"consume-{n}.log") for n in range(2)]
    writer = Writer(shop, limit=2500)
    kills = {"relay": 0, "consumer": 0, "connection": 0}
    try:
        relay.start()
        for consumer in consumers:
            consumer.start()
        writer.start()
        # when the relay, the consumer and the broker connection are killed in turn
        for round_ in range(9):
            time.sleep(0.6)
            victim = ("relay", "consumer", "connection")[round_ % 3]
            kills[victim] += 1
            if victim == "connection":
                assert forwarder.cut() > 0
                continue
            process = relay if victim == "relay" else consumers[kills["consumer"] % 2]
            process.kill(signal.SIGKILL)
            process.start()
        writer.halt.set()
        writer.join(timeout=30)
        assert writer.error is None
        # then, once the running relay has published the rest, the consumer applies it
        source, target = Database(shop_url), Database(service_url)
        head = int(source.query("SELECT max(id) AS h FROM outbox_outboxevent")[0]["h"])
        status = wait_until_applied(server, head)
        assert status["dead_letters"] == 0, status
        assert status["applied_twice"] == 0, status
        code, result = reconcile(shop_url, server)
        assert code == 0, json.dumps(result, indent=1)[:3000]
        # and every event was processed exactly once (relay from 0: applied or stale)
        every = {r["event_id"] for r in source.query("SELECT event_id FROM outbox_outboxevent")}
        processed = [r["event_id"] for r in target.query(
            "SELECT event_id FROM catalog_processedevent")]
        assert set(processed) == every
        assert len(processed) == len(set(processed))
        assert writer.count > 200
        # and the prune acknowledgement is the lowest partition's position: all of them here
        done = run([*STRANGLER, "outbox", "prune", "--source-db", shop_url, "--target",
                    f"{server.url}/internal/events/#monolith", "--token", SYNC_TOKEN,
                    "--keep", "0"])
        assert done.returncode == 0, done.stderr
        assert f"at or below position {head}" in done.stdout
        source.close()
        target.close()
    finally:
        writer.halt.set()
        relay.kill()
        for consumer in consumers:
            consumer.kill()
        server.stop()
        shop.close()
    print(json.dumps({"events": len(every), "kills": kills}))  # noqa: T201 - the figures


@needs_broker
def test_relay_resumes_from_the_position_the_broker_confirmed(
        amqp: tuple[BrokerLink, str]) -> None:
    _, prefix = amqp
    broker = Broker(broker_url(), "monolith", 4, prefix)
    endpoint = AmqpEndpoint(broker)
    try:
        assert endpoint.position() == 0
        endpoint.deliver([event(1, "1"), event(2, "2"), event(3, "1", 2)], 3)
        endpoint.deliver([], 7)  # the mark stepped over holes: it is kept as well
        again = AmqpEndpoint(broker)
        assert again.position() == 7
        again.close()
    finally:
        endpoint.close()


@needs_broker
def test_order_holds_through_an_unreadable_message_and_a_failed_apply(
        amqp: tuple[BrokerLink, str]) -> None:
    import pika

    _, prefix = amqp
    broker = Broker(broker_url(), "monolith", 4, prefix)
    mine = partition_of("store.Brand", "1", 4)
    endpoint = AmqpEndpoint(broker)
    # given a partition holding: batch 1, a message that is not JSON, batch 2, batch 3
    endpoint.deliver([event(1, "1")], 1)
    connection = pika.BlockingConnection(pika.URLParameters(broker_url()))
    channel = connection.channel()
    channel.basic_publish("", broker.queue(mine), b"\xff not json")
    endpoint.deliver([event(2, "1", 2)], 2)
    endpoint.deliver([event(3, "1", 3)], 3)
    endpoint.close()
    applied: list[int] = []
    failed: list[int] = []

    def apply(batches: Any) -> dict[str, int]:
        positions = [e.position for b in batches if b.partition == mine for e in b.events]
        if 2 in positions and not failed:  # the database is away once, at batch 2
            failed.append(2)
            raise RuntimeError("database away")
        applied.extend(positions)
        return {"applied": len(positions)}

    # when the consumer runs (until idle)
    status = AmqpConsumer(broker, apply, ConsumerOptions(prefetch=8, min_backoff=0.05,
                                                         idle_exit=1.5), log=lambda _: None).run()
    # then batch 2 came again after the failure, before batch 3: order kept
    assert applied == [1, 2, 3]
    assert status.failures == 1
    assert "database away" in status.last_error
    assert status.connections == 2
    # and the unreadable message was dead-lettered by the broker, not dropped
    assert status.unreadable == 1
    _, _, body = channel.basic_get(broker.unreadable_queue, auto_ack=True)
    assert body == b"\xff not json"
    connection.close()


@needs_broker
def test_a_consumer_with_other_partitions_acks_nothing_and_says_why(
        amqp: tuple[BrokerLink, str]) -> None:
    import threading

    _, prefix = amqp
    endpoint = AmqpEndpoint(Broker(broker_url(), "monolith", 4, prefix))
    endpoint.deliver([event(1, "1"), event(2, "2")], 2)
    endpoint.close()
    # when a consumer set up with 2 partitions reads the relay's 4-partition messages
    lines: list[str] = []
    consumer = AmqpConsumer(Broker(broker_url(), "monolith", 2, prefix), lambda b: {},
                            ConsumerOptions(min_backoff=0.05, max_backoff=0.1), log=lines.append)
    threading.Timer(1.5, lambda: setattr(consumer, "stopping", True)).start()
    status = consumer.run()
    # then it applied and acked nothing, and said how to fix it
    assert status.messages == 0
    assert status.failures >= 1
    assert "give relay and consumer the same --partitions" in status.last_error
    # and the messages are still there for a consumer set up right
    seen: list[int] = []
    AmqpConsumer(Broker(broker_url(), "monolith", 4, prefix),
                 lambda batches: seen.extend(e.position for b in batches for e in b.events)
                 or {}, ConsumerOptions(idle_exit=1.0), log=lines.append).run()
    assert sorted(seen) == [1, 2]


@needs_broker
def test_a_connection_lost_while_idle_is_replaced_before_the_next_batch(
        amqp: tuple[BrokerLink, str]) -> None:
    forwarder, prefix = amqp
    endpoint = AmqpEndpoint(Broker(forwarder.url, "monolith", 4, prefix))
    try:
        endpoint.deliver([event(1, "1")], 1)
        # when the connection dies while the relay has nothing to publish
        assert forwarder.cut() > 0
        time.sleep(0.3)
        # then the next batch goes out on a new connection, no failure
        endpoint.deliver([event(2, "1", 2)], 2)
        assert endpoint.position() == 2
    finally:
        endpoint.close()


@needs_broker
def test_unreachable_broker_is_one_line_and_the_once_relay_exits_non_zero(
        tmp_path: Path) -> None:
    import socket

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(DeliveryFailed, match=r"broker amqp://guest:\*\*\*@127.0.0.1:\d+/%2F "
                                             "unreachable"):
        AmqpEndpoint(Broker(broker_url(port))).position()
    shop = FakeShop(f"sqlite:///{tmp_path / 'shop.sqlite3'}")
    shop.create_schema()
    done = run(relay_amqp_argv(shop.url, broker_url(port), "x", "--once", "--max-backoff",
                               "0.05"))
    shop.close()
    assert done.returncode == 1
    assert "unreachable" in done.stdout


def shop_with_events(tmp_path: Path, products: int) -> FakeShop:
    """A SQLite shop with ``products`` products and their outbox events."""
    shop = FakeShop(f"sqlite:///{tmp_path / 'shop.sqlite3'}")
    shop.create_schema()
    shop.populate(products)
    return shop


@needs_broker
def test_the_relays_status_over_the_broker_leaves_applied_to_the_consumers(
        tmp_path: Path, amqp: tuple[BrokerLink, str]) -> None:
    forwarder, prefix = amqp
    # given a shop with a few events and no consumer running
    shop = shop_with_events(tmp_path, 3)
    try:
        # when a --once relay publishes them to the broker
        text = run(relay_amqp_argv(shop.url, forwarder.url, prefix, "--once"))
        as_json = run(relay_amqp_argv(shop.url, forwarder.url, prefix, "--once", "--json"))
    finally:
        shop.close()
    # then it says they were confirmed, and does not claim that none were applied
    assert text.returncode == 0, text.stdout + text.stderr
    assert "confirmed by the broker; applied, duplicates and stale: the consumers'" in \
        text.stdout
    assert "applied 0" not in text.stdout
    status = json.loads(as_json.stdout.strip().splitlines()[-1])
    assert status["transport"] == "amqp"
    assert status["delivered"] == 0  # the second relay resumed from the broker's cursor
    assert status["position"] == status["head"] > 0


@needs_broker
def test_a_new_broker_starts_where_the_consumer_is_not_at_zero(
        tmp_path: Path, amqp: tuple[BrokerLink, str]) -> None:
    forwarder, prefix = amqp
    # given a service that took every event of the shop over HTTP
    shop = shop_with_events(tmp_path, 8)
    server = CatalogServer(f"sqlite:///{tmp_path / 'catalog.sqlite3'}", tmp_path)
    server.migrate()
    server.start()
    try:
        events = int(Database(shop.url).query(
            "SELECT count(*) AS n FROM outbox_outboxevent")[0]["n"])
        http = run([*relay_argv(shop.url, f"{server.url}/internal/events/"), "--once"])
        assert http.returncode == 0, http.stdout + http.stderr
        # when the relay switches to a broker that has no cursor yet (a queue prefix of its own)
        switched = run(relay_amqp_argv(shop.url, forwarder.url, prefix, "--once", "--json",
                                       "--target", f"{server.url}/internal/events/",
                                       "--token", SYNC_TOKEN))
        # and, for contrast, with no consumer to ask (another new prefix, a dead target)
        blind = run(relay_amqp_argv(shop.url, forwarder.url, f"{prefix}b", "--once", "--json",
                                    "--target", "http://127.0.0.1:9/internal/events/"))
    finally:
        server.stop()
        shop.close()
        delete_queues(Broker(broker_url(), "monolith", 4, f"{prefix}b"))
    # then it publishes nothing the service already applied
    assert switched.returncode == 0, switched.stdout + switched.stderr
    moved = json.loads(switched.stdout.strip().splitlines()[-1])
    assert events > 0
    assert moved["delivered"] == 0, moved
    assert moved["position"] == moved["head"]
    # while without a consumer to ask it starts at 0: every event again (duplicates there)
    assert blind.returncode == 0, blind.stdout + blind.stderr
    assert json.loads(blind.stdout.strip().splitlines()[-1])["delivered"] == events


def test_consume_with_a_bad_broker_url_is_one_line(tmp_path: Path) -> None:
    done = run(consume_argv(f"sqlite:///{tmp_path / 'c.sqlite3'}", "amqp:/", "x",
                            "--partitions", "0"))
    assert done.returncode == 2
    assert "Invalid value for '--partitions'" in done.stderr
    done = run(consume_argv(f"sqlite:///{tmp_path / 'c.sqlite3'}", "rabbit://h/", "x"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "strangler: error: broker URL 'rabbit://h/': use amqp://user:password@host:5672/vhost "
        "(--broker-url or STRANGLER_BROKER_URL)")


def test_bad_broker_url_on_the_command_line_is_one_line(tmp_path: Path) -> None:
    shop = FakeShop(f"sqlite:///{tmp_path / 'shop.sqlite3'}")
    shop.create_schema()
    done = run(relay_amqp_argv(shop.url, "http://127.0.0.1/", "x", "--once"))
    shop.close()
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("strangler: error: broker URL 'http://")
    assert "Traceback" not in done.stderr
