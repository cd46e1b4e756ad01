"""Measure the sync: relay throughput, lag under the workload, backfill time.

Not a test (not collected by pytest); run it by hand, it prints the numbers the docs quote:

    .venv/bin/python tests/extracted/bench_relay.py throughput [--events 20000] [--pg URL]
    .venv/bin/python tests/extracted/bench_relay.py lag [--seconds 20]
    .venv/bin/python tests/extracted/bench_relay.py backfill [--size large]

Every process it starts listens on 127.0.0.1 with a port from the OS and is killed at
the end. The lead may move this file to bench/ (it lives here because this part owns
tests/extracted/).
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
import threading
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE / "sync")]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "extracted.catalog.settings")

from conftest import (  # noqa: E402
    STRANGLER,
    SYNC_TOKEN,
    CatalogServer,
    MonolithServer,
    Process,
    base_env,
    relay_argv,
)
from fake_shop import FakeShop  # noqa: E402


def _run(argv: list[str], timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=base_env(), capture_output=True, text=True,
                          timeout=timeout, check=True)


def _pg_database(server: str, name: str) -> str:
    import psycopg

    db = f"strangler_bench_{name}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    return server.rsplit("/", 1)[0] + f"/{db}"


def _drop(server: str | None, urls: list[str]) -> None:
    if not server:
        return
    import psycopg

    with psycopg.connect(server, autocommit=True) as conn:
        for url in urls:
            conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def throughput(events: int, pg: str | None, batch: int) -> dict[str, object]:
    """Pre-write ``events`` events, then time one ``relay --once`` delivering all of them."""
    work = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    if pg:
        shop_url, service_url = _pg_database(pg, "shop"), _pg_database(pg, "catalog")
    else:
        for name in ("shop", "catalog"):
            sqlite3.connect(work / f"{name}.sqlite3").close()
        shop_url = f"sqlite:///{work / 'shop.sqlite3'}"
        service_url = f"sqlite:///{work / 'catalog.sqlite3'}"
    shop = FakeShop(shop_url)
    shop.create_schema()
    shop.populate(50)
    while shop.outbox_count() < events:
        shop.random_change()
    server = CatalogServer(service_url, work)
    server.migrate()
    server.start()
    try:
        started = time.perf_counter()
        done = _run(relay_argv(shop_url, f"{server.url}/internal/events/", "outbox_outboxevent",
                               "monolith", "--once", "--json", "--batch-size", str(batch)))
        seconds = time.perf_counter() - started
        status = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        server.stop()
        shop.close()
        _drop(pg, [shop_url, service_url] if pg else [])
    return {"database": "postgresql" if pg else "sqlite", "events": status["delivered"],
            "batch_size": batch, "seconds": round(seconds, 2),
            "events_per_second": round(status["delivered"] / seconds, 1),
            "note": "wall time of `strangler relay --once`, process start included"}


def lag(seconds: float) -> dict[str, object]:
    """Run the monolith's workload for ``seconds`` with the relay on; sample its lag."""
    work = Path(tempfile.mkdtemp(prefix="bench-lag-"))
    (work / "mono").mkdir()
    monolith = MonolithServer(work / "mono").prepare().start()
    server = CatalogServer(f"sqlite:///{work / 'catalog.sqlite3'}", work)
    server.migrate()
    server.start()
    status_file = work / "relay.json"
    relay = Process(relay_argv(monolith.source_db, f"{server.url}/internal/events/",
                               "outbox_outboxevent", "monolith", "--status-file",
                               str(status_file)), base_env(), work / "relay.log")
    samples: list[dict[str, float]] = []
    try:
        _run([*STRANGLER, "backfill", "--source-db", monolith.source_db, "--service-url",
              server.url, "--token", SYNC_TOKEN, "--hole-grace", "0"])
        relay.start()
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                try:
                    data = json.loads(status_file.read_text())
                    samples.append({"lag_events": data["lag_events"],
                                    "lag_seconds": data["lag_seconds"],
                                    "delivered": data["delivered"]})
                except (OSError, ValueError, KeyError):
                    pass
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        done = subprocess.run([*STRANGLER, "monolith", "workload", "--base-url", monolith.url,
                               "--requests", "1000000", "--duration", str(seconds),
                               "--concurrency", "4", "--json"], env=monolith.env(),
                              capture_output=True, text=True, timeout=seconds + 120,
                              check=True)
        time.sleep(2)
        stop.set()
        sampler.join()
        workload = json.loads(done.stdout)
    finally:
        relay.kill()
        server.stop()
        monolith.stop()
    lags = [s["lag_seconds"] for s in samples] or [0.0]
    backlog = [s["lag_events"] for s in samples] or [0]
    delivered = samples[-1]["delivered"] if samples else 0
    return {"workload_requests": workload.get("requests"),
            "workload_rps": workload.get("requests_per_second", workload.get("rps")),
            "events_delivered": delivered,
            "events_per_second_under_workload": round(delivered / (seconds + 2), 1),
            "lag_seconds_p50": statistics.median(lags), "lag_seconds_max": max(lags),
            "lag_events_max": max(backlog), "samples": len(samples)}


def backfill(size: str) -> dict[str, object]:
    """Seed the monolith (``size``) and time a full backfill into an empty service."""
    work = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    (work / "mono").mkdir()
    monolith = MonolithServer(work / "mono")
    started = time.perf_counter()
    monolith.prepare(size)
    seed_seconds = time.perf_counter() - started
    server = CatalogServer(f"sqlite:///{work / 'catalog.sqlite3'}", work)
    server.migrate()
    server.start()
    try:
        started = time.perf_counter()
        done = _run([*STRANGLER, "backfill", "--source-db", monolith.source_db, "--service-url",
                     server.url, "--token", SYNC_TOKEN, "--hole-grace", "0", "--batch-size",
                     "1000", "--json"])
        seconds = time.perf_counter() - started
        report = json.loads(done.stdout)
        started = time.perf_counter()
        check = subprocess.run([*STRANGLER, "reconcile", "--source-db", monolith.source_db,
                                "--service-url", server.url, "--token", SYNC_TOKEN],
                               env=base_env(), capture_output=True, text=True, timeout=1800,
                               check=False)
        reconcile_seconds = time.perf_counter() - started
    finally:
        server.stop()
    return {"size": size, "seed_seconds": round(seed_seconds, 1),
            "rows_copied": report["total_copied"], "backfill_seconds": round(seconds, 1),
            "rows_per_second": round(report["total_copied"] / seconds, 1),
            "reconcile_seconds": round(reconcile_seconds, 1),
            "reconcile_exit": check.returncode, "copied": report["copied"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["throughput", "lag", "backfill"])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--pg", default=None, help="PostgreSQL server URL (throughput)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--size", default="large")
    args = parser.parse_args()
    if args.what == "throughput":
        result = throughput(args.events, args.pg, args.batch_size)
    elif args.what == "lag":
        result = lag(args.seconds)
    else:
        result = backfill(args.size)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
