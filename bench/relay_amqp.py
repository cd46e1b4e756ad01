"""The relay over RabbitMQ beside its anchor, the relay over HTTP: time to apply N events.

    python -m bench.relay_amqp                         # SQLite, 20,000 events, 3 rounds
    python -m bench.relay_amqp --pg postgresql://postgres@127.0.0.1:5432/postgres
    python -m bench.relay_amqp --events 5000 --rounds 1 --broker-url amqp://...

One producer (``FakeShop``: catalog tables + outbox) is filled with N events; then, for each
transport, a fresh catalog database and service: HTTP is one ``strangler relay --once``
(POSTs, applied in the request); AMQP is ``strangler relay --transport amqp --once``
(publisher confirms) with ``strangler catalog consume`` applying, timed until the service's
stream position reaches the outbox head. Process starts are in both times. Prints the
seconds, events/s and the ratio AMQP / HTTP (below 1: AMQP is faster). Everything runs on
127.0.0.1 (ports from the OS, queues under a prefix of its own, deleted at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests" / "extracted"
sys.path[:0] = [str(TESTS), str(TESTS / "sync")]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "extracted.catalog.settings")

import httpx  # noqa: E402
from conftest import STRANGLER, SYNC_TOKEN, CatalogServer, Process, base_env  # noqa: E402
from fake_shop import FakeShop  # noqa: E402

from extracted.sync.amqp import DEFAULT_BROKER_URL, Broker, delete_queues  # noqa: E402


def _database(pg: str | None, work: Path, name: str, made: list[str]) -> str:
    if pg is None:
        path = work / f"{name}-{uuid.uuid4().hex[:6]}.sqlite3"
        sqlite3.connect(path).close()
        return f"sqlite:///{path}"
    import psycopg

    db = f"strangler_bench_{name}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    made.append(db)
    return pg.rsplit("/", 1)[0] + f"/{db}"


def _position(server: CatalogServer) -> int:
    answer = httpx.get(f"{server.url}/internal/events/", params={"stream": "monolith"},
                       headers={"Authorization": f"Bearer {SYNC_TOKEN}"}, timeout=10)
    return int(answer.json()["position"])


def _one(transport: str, shop_url: str, head: int, pg: str | None, work: Path,
         made: list[str], broker_url: str, batch: int) -> float:
    own = Path(tempfile.mkdtemp(prefix=f"{transport}-", dir=work))  # its own log files
    server = CatalogServer(_database(pg, own, "catalog", made), own)
    server.migrate()
    server.start()
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    common = ["--source-db", shop_url, "--stream", "monolith", "--once", "--batch-size",
              str(batch)]
    consumer = None
    try:
        started = time.perf_counter()
        if transport == "http":
            subprocess.run([*STRANGLER, "relay", *common, "--target",
                            f"{server.url}/internal/events/", "--token", SYNC_TOKEN],
                           env=base_env(), check=True, capture_output=True, timeout=1800)
        else:
            consumer = Process([*STRANGLER, "catalog", "consume", "--database-url",
                                server.database_url, "--broker-url", broker_url,
                                "--queue-prefix", prefix], base_env(),
                               work / f"consume-{prefix}.log").start()
            subprocess.run([*STRANGLER, "relay", *common, "--transport", "amqp",
                            "--broker-url", broker_url, "--queue-prefix", prefix],
                           env=base_env(), check=True, capture_output=True, timeout=1800)
            while _position(server) < head:
                time.sleep(0.05)
        seconds = time.perf_counter() - started
        assert _position(server) >= head
        return seconds
    finally:
        if consumer is not None:
            consumer.kill()
            delete_queues(Broker(broker_url, "monolith", 4, prefix))
        server.stop()


def run(events: int, rounds: int, pg: str | None, broker_url: str,
        batch: int) -> dict[str, object]:
    """Fill one outbox, then time each transport ``rounds`` times (alternating)."""
    work = Path(tempfile.mkdtemp(prefix="bench-amqp-"))
    made: list[str] = []
    try:
        shop_url = _database(pg, work, "shop", made)
        shop = FakeShop(shop_url)
        shop.create_schema()
        shop.populate(50)
        while shop.outbox_count() < events:
            shop.random_change()
        head = int(shop.execute("SELECT max(id) FROM outbox_outboxevent")[0][0])
        shop.close()
        times: dict[str, list[float]] = {"http": [], "amqp": []}
        for _ in range(rounds):
            for transport in ("http", "amqp"):
                times[transport].append(_one(transport, shop_url, head, pg, work, made,
                                             broker_url, batch))
    finally:
        if made and pg:
            import psycopg

            with psycopg.connect(pg, autocommit=True) as conn:
                for db in made:
                    conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    http, amqp = statistics.median(times["http"]), statistics.median(times["amqp"])
    return {"database": "postgresql" if pg else "sqlite", "events": head, "rounds": rounds,
            "batch_size": batch, "http_seconds": round(http, 2),
            "amqp_seconds": round(amqp, 2),
            "http_events_per_second": round(head / http), "amqp_events_per_second":
            round(head / amqp), "time_ratio_amqp_to_http": round(amqp / http, 2),
            "all": {k: [round(x, 2) for x in v] for k, v in times.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--pg", default=None, help="PostgreSQL server URL (else SQLite)")
    parser.add_argument("--broker-url", default=os.environ.get("STRANGLER_BROKER_URL",
                                                               DEFAULT_BROKER_URL))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.events, args.rounds, args.pg, args.broker_url, args.batch_size)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{'transport':<10}{'seconds':>9}{'events/s':>10}   ({result['events']} events, "
          f"{result['database']}, median of {result['rounds']})")
    print(f"{'http':<10}{result['http_seconds']:>9}{result['http_events_per_second']:>10}")
    print(f"{'amqp':<10}{result['amqp_seconds']:>9}{result['amqp_events_per_second']:>10}")
    print(f"time ratio amqp/http: {result['time_ratio_amqp_to_http']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
