"""A Jepsen-style run of the whole data path: writes, faults, then an independent check.

Writers edit and create products through whichever side owns the catalog (the routes file's
``catalog`` route says which, as the proxy would), recording every write as acknowledged
(2xx), refused (the fence's 503: not applied) or unknown (no answer: maybe applied). While
they write: the relays (both directions) are SIGKILLed and restarted, the service and the
monolith are SIGKILLed and restarted, the backfill is re-run, and the catalog is cut over to
the service and back. Afterwards the relays are drained and ``check`` reads both databases
itself (its own SQL and normalisation, nothing from ``extracted.sync``) and counts:

* lost: an acknowledged write whose value is not the row's final value (unless a later
  unknown write may have replaced it), or an acknowledged product missing;
* duplicated: an event applied twice, or an (aggregate, sequence) applied twice;
* differing: a row of the seven catalog tables that differs between the two databases.

``tests/extracted/test_jepsen.py`` runs it bounded (seconds); ``bench/sync_soak.py`` long.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from conftest import (
    STAFF_TOKEN,
    STRANGLER,
    SYNC_TOKEN,
    CatalogServer,
    MonolithServer,
    Process,
    base_env,
    relay_argv,
)

# (monolith table, service table, columns): the checker's own idea of the catalog
TABLES = (
    ("common_tag", "catalog_tag", ("name", "slug")),
    ("store_category", "catalog_category", ("name", "slug", "parent_id")),
    ("store_brand", "catalog_brand", ("name", "slug", "country")),
    ("store_product", "catalog_product", ("sku", "name", "slug", "description", "category_id",
                                          "brand_id", "price", "currency", "is_active")),
    ("store_productimage", "catalog_productimage", ("product_id", "url", "position")),
    ("store_pricehistory", "catalog_pricehistory", ("product_id", "amount", "currency")),
    ("store_producttag", "catalog_producttag", ("product_id", "tag_id")),
)


@dataclass
class History:
    """Every write a client made, per product, in the order it made them."""

    names: dict[int, list[tuple[str, str]]] = field(default_factory=dict)  # id -> (value, how)
    created: dict[str, str] = field(default_factory=dict)  # sku -> ok / unknown
    refused: int = 0
    acknowledged: int = 0
    unknown: int = 0
    longest_refusal: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, key: int, value: str, how: str) -> None:
        with self.lock:
            self.names.setdefault(key, []).append((value, how))
            self.acknowledged += how == "ok"
            self.unknown += how == "unknown"


def owner_of(routes: Path) -> str:
    """The side the ``catalog`` route sends writes to (as the proxy would)."""
    data = tomllib.loads(routes.read_text())
    mode = next(r["mode"] for r in data["routes"] if r["name"] == "catalog")
    return "service" if mode == "service" else "monolith"


class Writer(threading.Thread):
    """Renames its own products and creates new ones through the owning side's API."""

    def __init__(self, n: int, keys: list[int], routes: Path, clients: dict[str, httpx.Client],
                 history: History, seed: int) -> None:
        super().__init__(daemon=True)
        self.n, self.keys, self.routes, self.clients = n, keys, routes, clients
        self.history, self.rng = history, random.Random(seed)
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        count, refused_since = 0, 0.0
        try:
            while not self.halt.is_set():
                count += 1
                side = owner_of(self.routes)
                outcome = self._write(side, count)
                if outcome == "refused":
                    refused_since = refused_since or time.monotonic()
                    time.sleep(0.02)
                    continue
                if refused_since:
                    with self.history.lock:
                        self.history.longest_refusal = max(self.history.longest_refusal,
                                                           time.monotonic() - refused_since)
                    refused_since = 0.0
                time.sleep(0.005)
        except BaseException as exc:  # noqa: BLE001 - reported by the checker
            self.error = exc

    def _write(self, side: str, count: int) -> str:
        client = self.clients[side]
        if count % 10 == 0:
            sku = f"J{self.n}-{count}"
            body = {"sku": sku, "name": sku, "slug": sku.lower(), "category": 1, "brand": 1,
                    "price": "3.00"}
            how = self._call(client, "POST", "/api/products/", body)
            if how != "refused":
                self.history.created[sku] = how
            return how
        key = self.rng.choice(self.keys)
        value = f"w{self.n}-{count}"
        how = self._call(client, "PATCH", f"/api/products/{key}/", {"name": value})
        if how != "refused":
            self.history.record(key, value, how)
        return how

    def _call(self, client: httpx.Client, method: str, url: str, body: dict[str, Any]) -> str:
        try:
            answer = client.request(method, url, json=body)
        except httpx.ConnectError:
            time.sleep(0.05)
            return "refused"  # never sent (the server is restarting): not applied
        except httpx.HTTPError:
            return "unknown"
        if answer.status_code == 503 and "fenced" in answer.text:
            self.history.refused += 1
            return "refused"
        if answer.is_success:
            return "ok"
        if answer.status_code >= 500:
            return "unknown"
        raise AssertionError(f"{method} {url} -> {answer.status_code} {answer.text[:300]}")


# --- the independent checker ----------------------------------------------------------------


def _rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return list(conn.execute(sql).fetchall())
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(url) as conn:
        return list(conn.execute(sql).fetchall())


def _canon(value: Any) -> Any:
    if isinstance(value, Decimal | float) or (isinstance(value, str) and value.replace(
            ".", "", 1).isdigit() and "." in value):
        return f"{Decimal(str(value)):.2f}"
    if isinstance(value, bool):
        return int(value)
    return value


@dataclass
class Verdict:
    """What the checker counted."""

    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    differing: list[str] = field(default_factory=list)
    events_checked: int = 0
    rows_checked: int = 0

    @property
    def ok(self) -> bool:
        """Zero lost, zero duplicated, zero differing."""
        return not (self.lost or self.duplicated or self.differing)

    def summary(self) -> dict[str, Any]:
        """Counts plus the first few examples of each."""
        return {"lost": len(self.lost), "duplicated": len(self.duplicated),
                "differing": len(self.differing), "events_checked": self.events_checked,
                "rows_checked": self.rows_checked, "examples": (self.lost + self.duplicated
                                                                + self.differing)[:10]}


def check(monolith_db: str, service_db: str, history: History,
          every_forward_event: bool = False) -> Verdict:
    """Compare both databases with each other and with every write the clients made.

    ``every_forward_event``: also count as lost any monolith outbox event the service never
    processed (as applied, stale or dead letter). Only for runs without a cutover, whose
    in-process drain delivers over HTTP and would process them whatever the transport did.
    """
    verdict = Verdict()
    for mono_table, svc_table, columns in TABLES:
        cols = ", ".join(("id", *columns))
        here = _table(monolith_db, f"SELECT {cols} FROM {mono_table}")  # noqa: S608
        there = _table(service_db, f"SELECT {cols} FROM {svc_table}")  # noqa: S608
        verdict.rows_checked += len(here)
        verdict.differing += [f"{mono_table} {k}: {here.get(k)} != {there.get(k)}"
                              for k in sorted(set(here) | set(there))
                              if here.get(k) != there.get(k)]
    names = dict(_rows(monolith_db, "SELECT id, name FROM store_product"))
    for key, writes in history.names.items():
        allowed = _allowed(writes)
        if allowed and names.get(key) not in allowed:
            verdict.lost.append(f"product {key}: {names.get(key)!r} not in {sorted(allowed)}")
    skus = {r[0] for r in _rows(monolith_db, "SELECT sku FROM store_product")}
    verdict.lost += [f"created {sku} missing" for sku, how in history.created.items()
                     if how == "ok" and sku not in skus]
    _check_events(monolith_db, service_db, verdict)
    if every_forward_event:
        sent = {r[0] for r in _rows(monolith_db, "SELECT event_id FROM outbox_outboxevent")}
        seen = {r[0] for r in _rows(service_db, "SELECT event_id FROM catalog_processedevent")}
        verdict.lost += [f"monolith event {e} never processed by the service"
                         for e in sorted(sent - seen)]
    return verdict


def _table(url: str, sql: str) -> dict[Any, tuple[Any, ...]]:
    return {r[0]: tuple(map(_canon, r[1:])) for r in _rows(url, sql)}


def _allowed(writes: list[tuple[str, str]]) -> set[str]:
    """The last acknowledged value, and any unknown one written after it.

    >>> sorted(_allowed([("a", "ok"), ("b", "unknown"), ("c", "ok"), ("d", "unknown")]))
    ['c', 'd']
    >>> _allowed([("a", "unknown")])
    set()
    """
    last_ok = max((i for i, (_, how) in enumerate(writes) if how == "ok"), default=-1)
    if last_ok < 0:
        return set()  # never acknowledged: nothing was promised
    return {writes[last_ok][0]} | {v for v, how in writes[last_ok + 1:] if how == "unknown"}


def _check_events(monolith_db: str, service_db: str, verdict: Verdict) -> None:
    twice = _rows(service_db, "SELECT aggregate_type, aggregate_id, sequence, count(*) FROM "
                  "catalog_processedevent WHERE outcome = 'applied' GROUP BY aggregate_type, "
                  "aggregate_id, sequence HAVING count(*) > 1")
    verdict.duplicated += [f"applied twice: {r}" for r in twice]
    sent = {r[0] for r in _rows(monolith_db, "SELECT event_id FROM outbox_outboxevent")}
    seen = [r[0] for r in _rows(service_db, "SELECT event_id FROM catalog_processedevent")]
    verdict.duplicated += [f"processed twice: {e}" for e in {e for e in seen if seen.count(e) > 1}]
    back = {r[0] for r in _rows(service_db, "SELECT event_id FROM catalog_outboxevent")}
    consumed = [r[0] for r in _rows(monolith_db, "SELECT event_id FROM outbox_consumedevent")]
    verdict.lost += [f"service event {e} never reached the monolith" for e in back - set(consumed)]
    verdict.duplicated += [f"consumed twice: {e}" for e in set(consumed)
                           if consumed.count(e) > 1]
    here = {(r[0], str(r[1])): int(r[2]) for r in _rows(
        monolith_db, "SELECT aggregate_type, aggregate_id, last FROM outbox_aggregatesequence")}
    there = {(r[0], str(r[1])): int(r[2]) for r in _rows(
        service_db, "SELECT aggregate_type, aggregate_id, sequence FROM catalog_aggregateversion")}
    verdict.differing += [f"version {k}: monolith {here[k]} service {there[k]}"
                          for k in set(here) & set(there)
                          if here[k] != there[k] and not k[0].startswith(("inventory", "reviews"))]
    verdict.events_checked = len(sent) + len(back)


# --- the run ----------------------------------------------------------------------------------


@dataclass
class Faults:
    """What was injected."""

    relay_kills: int = 0
    consumer_kills: int = 0  # the AMQP consumer (test_amqp_jepsen.py)
    broker_kills: int = 0  # every broker connection cut at once (test_amqp_jepsen.py)
    service_kills: int = 0
    monolith_kills: int = 0
    backfills: int = 0
    cutovers: int = 0
    undos: int = 0
    pauses: list[float] = field(default_factory=list)


def routes_text(monolith: str, catalog: str) -> str:
    """A routes file with the catalog's three routes, in mode monolith."""
    routes = "\n".join(
        f'[[routes]]\nname = "{name}"\nmatch = {{ path_prefix = "{prefix}" }}\n'
        'mode = "monolith"\ntarget = "catalog"\n'
        for name, prefix in (("catalog", "/api/products/"),
                             ("catalog-categories", "/api/categories/"),
                             ("catalog-brands", "/api/brands/")))
    return (f'[proxy]\nlisten = "127.0.0.1:0"\n\n[admin]\nlisten = "127.0.0.1:0"\n'
            f'token_env = "STRANGLER_ADMIN_TOKEN"\n\n[upstreams.monolith]\nurl = "{monolith}"\n'
            f'\n[upstreams.catalog]\nurl = "{catalog}"\n\n{routes}')


class Cluster:
    """Monolith, service, both relays and the routes file, in one work directory."""

    def __init__(self, workdir: Path, make_db: Callable[[str], str], pg: bool) -> None:
        (workdir / "mono").mkdir(exist_ok=True)
        self.workdir = workdir
        self.monolith = MonolithServer(workdir / "mono", make_db("shop") if pg else "")
        self.service = CatalogServer(make_db("catalog"), workdir)
        self.routes = workdir / "strangler.toml"
        self.forward: Process | None = None
        self.reverse: Process | None = None

    def start(self) -> None:
        self.monolith.prepare().start()
        self.service.migrate()
        self.service.start()
        self.routes.write_text(routes_text(self.monolith.url, self.service.url))
        self.run([*STRANGLER, "backfill", "--source-db", self.monolith.source_db,
                  "--service-url", self.service.url, "--token", SYNC_TOKEN])
        self.forward = Process(self.relay_argv("forward"), base_env(),
                               self.workdir / "forward.log").start()
        self.reverse = Process(self.relay_argv("reverse"), base_env(),
                               self.workdir / "reverse.log").start()

    def relay_argv(self, direction: str, *extra: str) -> list[str]:
        if direction == "forward":
            return relay_argv(self.monolith.source_db, f"{self.service.url}/internal/events/",
                              "outbox_outboxevent", "monolith", *extra)
        return relay_argv(self.service.database_url,
                          f"{self.monolith.url}/internal/catalog-events/",
                          "catalog_outboxevent", "catalog", *extra)

    def run(self, argv: list[str], ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(argv, env=base_env(), capture_output=True, text=True,
                              timeout=180, check=False)
        if ok:
            assert done.returncode == 0, f"{argv[3:5]}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        return done

    def move(self, undo: bool) -> float:
        argv = [*STRANGLER, "cutover", "catalog", "--source-db", self.monolith.source_db,
                "--service-db", self.service.database_url, "--service-url", self.service.url,
                "--monolith-url", self.monolith.url, "--token", SYNC_TOKEN, "--routes",
                str(self.routes), "--audit-log", str(self.workdir / "cutover.jsonl"), "--json"]
        done = self.run([*argv, "--undo"] if undo else argv)
        return float(json.loads(done.stdout)["pause"])

    def clients(self) -> dict[str, httpx.Client]:
        return {
            "monolith": httpx.Client(base_url=self.monolith.url, timeout=10, headers={
                "Authorization": f"Token {self.monolith.token('staff')}"}),
            "service": httpx.Client(base_url=self.service.url, timeout=10, headers={
                "Authorization": f"Token {STAFF_TOKEN}"}),
        }

    def drain(self) -> None:
        for direction in ("forward", "reverse", "forward"):
            self.run(self.relay_argv(direction, "--once"))

    def stop(self) -> None:
        for process in (self.forward, self.reverse):
            if process is not None:
                process.kill()
        self.service.stop()
        self.monolith.stop()


def jepsen_run(cluster: Cluster, seconds: float, seed: int, cycles: int = 1,
               writers: int = 2, faults_on: bool = True,
               workload: bool = False) -> tuple[Verdict, Faults, History]:
    """Start, write under faults for ``seconds``, quiesce, drain and check.

    ``workload`` adds the monolith's own workload generator (shoppers: orders, stock and
    review changes, whose derived facts keep flowing forward through every cutover).
    """
    rng = random.Random(seed)
    cluster.start()
    shoppers = None
    if workload:
        shoppers = Process([*STRANGLER, "monolith", "workload", "--base-url",
                            cluster.monolith.url, "--requests", "1000000", "--duration",
                            str(int(seconds)), "--concurrency", "2"], cluster.monolith.env(),
                           cluster.workdir / "workload.log").start()
    history, faults = History(), Faults()
    clients = cluster.clients()
    keys = list(range(1, 41))
    threads = [Writer(n, keys[n::writers], cluster.routes, clients, history, seed + n)
               for n in range(writers)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + seconds
    moves = [deadline - seconds * (1 - (i + 1) / (2 * cycles + 1)) for i in range(2 * cycles)]
    backfill_at = time.monotonic() + seconds / (4 * cycles + 2)  # one re-run, monolith owning
    try:
        while time.monotonic() < deadline:
            if moves and time.monotonic() >= moves[0]:
                moves.pop(0)
                undo = owner_of(cluster.routes) == "service"
                faults.pauses.append(cluster.move(undo))
                faults.undos += undo
                faults.cutovers += not undo
                continue
            if backfill_at and time.monotonic() >= backfill_at:
                backfill_at = 0.0
                _backfill(cluster, faults)
                continue
            if faults_on:
                getattr(cluster, "one_fault", partial(_one_fault, cluster))(rng, faults)
            time.sleep(rng.uniform(0.3, 1.0) if faults_on else 0.05)
        for _ in moves:  # the ones a slow machine did not reach in time, still under writes
            undo = owner_of(cluster.routes) == "service"
            faults.pauses.append(cluster.move(undo))
            faults.undos += undo
            faults.cutovers += not undo
        if owner_of(cluster.routes) == "service":  # end where it started
            faults.pauses.append(cluster.move(True))
            faults.undos += 1
    finally:
        if shoppers is not None:
            shoppers.kill()
        for thread in threads:
            thread.halt.set()
        for thread in threads:
            thread.join(timeout=30)
    for thread in threads:
        assert thread.error is None, repr(thread.error)
    cluster.drain()
    for client in clients.values():
        client.close()
    verdict = check(cluster.monolith.source_db, cluster.service.database_url, history,
                    getattr(cluster, "every_forward_event", False))
    return verdict, faults, history


def _one_fault(cluster: Cluster, rng: random.Random, faults: Faults) -> None:
    roll = rng.random()
    if roll < 0.45:
        relay = cluster.forward if rng.random() < 0.6 else cluster.reverse
        assert relay is not None
        relay.kill(signal.SIGKILL)
        relay.start()
        faults.relay_kills += 1
    elif roll < 0.65:
        assert cluster.service.process is not None
        cluster.service.process.kill(signal.SIGKILL)
        cluster.service.start()
        faults.service_kills += 1
    elif roll < 0.85:
        assert cluster.monolith.process is not None
        cluster.monolith.process.kill(signal.SIGKILL)
        cluster.monolith.start()
        faults.monolith_kills += 1
    elif owner_of(cluster.routes) == "monolith":
        _backfill(cluster, faults)


def _backfill(cluster: Cluster, faults: Faults) -> None:
    cluster.run([*STRANGLER, "backfill", "--source-db", cluster.monolith.source_db,
                 "--service-url", cluster.service.url, "--token", SYNC_TOKEN])
    faults.backfills += 1
