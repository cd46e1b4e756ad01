"""A Jepsen-style run of the checkout saga: shoppers pay and cancel under faults, then an
independent check of both databases.

Shoppers (one thread per user) fill a cart, check out, pay and sometimes cancel, through
the ordering service, recording each checkout as acknowledged (201) or unknown (no answer).
Products with the least stock are chosen, so payments are refused for want of stock too.
While they shop, the relays (both directions), the service and the monolith are SIGKILLed
and restarted. Then everything is restarted, the relays deliver until
``strangler ordering sagas`` lists no waiting saga, and ``check`` reads both databases with
its own SQL (nothing from ``extracted`` or ``legacy_monolith``) and counts:

* lost: an acknowledged order missing from the service;
* charge without order: a succeeded charge whose order is not paid in the service, a
  refunded one whose order is not cancelled, two charges for one order;
* paid without charge: an order paid in the service without exactly one charge;
* double reservation: a line whose unreleased reserved units are neither 0 nor its
  quantity, or do not match its order's state (paid: reserved; otherwise: none);
* stock: a product whose units on hand moved by other than its unreleased reservations;
* stuck: a saga still waiting;
* copy: once the reverse stream is drained, an order whose status in the monolith's copy
  (``orders_order``, written by the reverse stream and the saga's participant) is not the
  service's: what an undo of the cutover would lose or get wrong.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from conftest import (
    STRANGLER,
    SYNC_TOKEN,
    CatalogServer,
    MonolithServer,
    Process,
    base_env,
    relay_argv,
)


def rows(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The checker's own SQL (``?`` placeholders on both databases), committed."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=20)
        try:
            found = list(conn.execute(sql, params).fetchall())
            conn.commit()
            return found
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(url) as conn:
        cursor = conn.execute(sql.replace("?", "%s"), params)
        return list(cursor.fetchall()) if cursor.description else []


@dataclass
class History:
    """What the shoppers were told."""

    orders: dict[int, str] = field(default_factory=dict)  # order id -> "ok"
    calls: Counter[str] = field(default_factory=Counter)  # "pay 202", "checkout unknown", ...
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, what: str) -> None:
        with self.lock:
            self.calls[what] += 1


class Shopper(threading.Thread):
    """One user: cart, checkout, pay, sometimes cancel, until halted."""

    def __init__(self, url: str, token: str, address: int, products: list[int],
                 history: History, seed: int) -> None:
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=url, timeout=5,
                                   headers={"Authorization": f"Token {token}"})
        self.address, self.products, self.history = address, products, history
        self.rng, self.halt = random.Random(seed), threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                self._shop()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self.client.close()

    def _call(self, name: str, method: str, path: str, body: Any = None) -> httpx.Response | None:
        try:
            answer = self.client.request(method, path, json=body)
        except httpx.HTTPError:
            self.history.note(f"{name} unknown")
            time.sleep(0.1)
            return None
        self.history.note(f"{name} {answer.status_code}")
        if answer.status_code >= 500:
            return None
        return answer

    def _shop(self) -> None:
        self._call("cart", "POST", "/api/cart/items/",
                   {"product": self.rng.choice(self.products),
                    "quantity": self.rng.randint(1, 3)})
        made = self._call("checkout", "POST", "/api/checkout/",
                          {"shipping_address": self.address})
        if made is None or made.status_code != 201:
            return
        order = int(made.json()["id"])
        with self.history.lock:
            self.history.orders[order] = "ok"
        self._call("pay", "POST", f"/api/orders/{order}/pay/", {"method": "card"})
        if self.rng.random() < 0.35:
            time.sleep(self.rng.uniform(0, 0.4))
            self._call("cancel", "POST", f"/api/orders/{order}/cancel/")


@dataclass
class Faults:
    """What was done to the processes."""

    relay_kills: int = 0
    service_kills: int = 0
    monolith_kills: int = 0


class SagaCluster:
    """Monolith, ordering service and both relays, in one work directory."""

    def __init__(self, workdir: Path, monolith_db: str, service_db: str) -> None:
        (workdir / "mono").mkdir(exist_ok=True)
        self.workdir = workdir
        self.monolith = MonolithServer(workdir / "mono", monolith_db)
        self.service = CatalogServer(service_db, workdir, service="ordering")
        self.relays: dict[str, Process] = {}

    def start(self) -> None:
        self.monolith.prepare().start()
        self.service.extra_env = {"ORDERING_AUTH_URL": self.monolith.url}
        self.service.migrate()
        self.service.start()
        self.run([*STRANGLER, "backfill", "--context", "ordering", "--source-db",
                  self.monolith.source_db, "--service-url", self.service.url,
                  "--token", SYNC_TOKEN])
        for direction in ("replies", "requests"):
            self.relays[direction] = Process(self.relay_argv(direction), base_env(),
                                             self.workdir / f"{direction}.log").start()

    def relay_argv(self, direction: str, *extra: str) -> list[str]:
        if direction == "replies":  # the monolith's outbox: catalog rows and saga replies
            return relay_argv(self.monolith.source_db, f"{self.service.url}/internal/events/",
                              "outbox_outboxevent", "monolith", *extra)
        return relay_argv(self.service.database_url,
                          f"{self.monolith.url}/internal/saga-events/",
                          "ordering_outboxevent", "ordering", *extra)

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(argv, env=base_env(), capture_output=True, text=True,
                              timeout=180, check=False)
        assert done.returncode == 0, f"{argv[3:5]}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        return done

    def waiting_sagas(self) -> list[dict[str, Any]]:
        done = subprocess.run([*STRANGLER, "ordering", "sagas", "--json", "--database-url",
                               self.service.database_url], env=base_env(),
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode in (0, 1), done.stderr
        waiting: list[dict[str, Any]] = json.loads(done.stdout)["waiting"]
        return waiting

    def fault(self, rng: random.Random, faults: Faults) -> None:
        roll = rng.random()
        if roll < 0.5:
            relay = self.relays[rng.choice(["replies", "requests"])]
            relay.kill(signal.SIGKILL)
            relay.start()
            faults.relay_kills += 1
        elif roll < 0.75:
            assert self.service.process is not None
            self.service.process.kill(signal.SIGKILL)
            self.service.start()
            faults.service_kills += 1
        else:
            assert self.monolith.process is not None
            self.monolith.process.kill(signal.SIGKILL)
            self.monolith.start()
            faults.monolith_kills += 1

    def stop(self) -> None:
        for process in self.relays.values():
            process.kill()
        self.service.stop()
        self.monolith.stop()


@dataclass
class Baseline:
    """The monolith before the shoppers: stock per product, where new rows start."""

    stock: dict[int, int]
    last_order: int
    last_reservation: int


def baseline(monolith_db: str) -> Baseline:
    stock = dict(rows(monolith_db, "SELECT product_id, SUM(quantity) FROM store_stocklevel "
                                   "GROUP BY product_id"))
    last_order = rows(monolith_db, "SELECT COALESCE(MAX(id), 0) FROM orders_order")[0][0]
    last_res = rows(monolith_db, "SELECT COALESCE(MAX(id), 0) FROM store_stockreservation")[0][0]
    return Baseline({int(k): int(v) for k, v in stock.items()}, int(last_order), int(last_res))


def shoppers_of(cluster: SagaCluster, count: int) -> list[tuple[str, int]]:
    """``count`` users with a token and an address (alice and seeded shoppers)."""
    out: list[tuple[str, int]] = []
    with httpx.Client(base_url=cluster.monolith.url, timeout=10) as client:
        for n in range(count):
            if n == 0:
                token = cluster.monolith.token("alice")
            else:
                token = client.post("/api/auth/token/", json={
                    "username": f"shopper{n:04d}", "password": "shopper-password"}).json()["token"]
            mine = client.get("/api/addresses/", headers={"Authorization": f"Token {token}"})
            out.append((token, int(mine.json()["results"][0]["id"])))
    return out


def saga_run(cluster: SagaCluster, seconds: float, seed: int, shoppers: int = 3,
             faults_on: bool = True, min_orders: int = 0,
             max_seconds: float = 0.0) -> tuple[Verdict, Faults, History, Baseline]:
    """Start, shop under faults for ``seconds``, restart all, wait for the sagas, check.

    With ``min_orders``, the faults and the shopping go on past ``seconds`` until that many
    orders were placed (up to ``max_seconds`` in all): on a slow or busy machine a fixed
    window once gave 7 orders and 9 orders, under the tests' floor, with a clean verdict.
    """
    rng = random.Random(seed)
    cluster.start()
    base = baseline(cluster.monolith.source_db)
    scarce = sorted((units, pid) for pid, units in base.stock.items() if units > 0)[:6]
    history, faults = History(), Faults()
    threads = [Shopper(cluster.service.url, token, address, [p for _, p in scarce], history,
                       seed + n) for n, (token, address) in enumerate(shoppers_of(cluster,
                                                                                  shoppers))]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    deadline, last = started + seconds, started + max(seconds, max_seconds)
    try:
        while time.monotonic() < deadline or (len(history.orders) < min_orders
                                              and time.monotonic() < last):
            time.sleep(rng.uniform(0.5, 1.2))
            if faults_on:
                cluster.fault(rng, faults)
    finally:
        for thread in threads:
            thread.halt.set()
        for thread in threads:
            thread.join(timeout=30)
    for thread in threads:
        assert thread.error is None, repr(thread.error)
    settle = time.monotonic() + 60
    while cluster.waiting_sagas() and time.monotonic() < settle:
        time.sleep(0.5)
    while not reverse_drained(cluster) and time.monotonic() < settle + 30:
        time.sleep(0.5)
    verdict = check(cluster.monolith.source_db, cluster.service.database_url, history, base)
    return verdict, faults, history, base


def reverse_drained(cluster: SagaCluster) -> bool:
    """The monolith has taken the service's outbox up to its head (the reverse stream)."""
    [(head,)] = rows(cluster.service.database_url,
                     "SELECT COALESCE(MAX(id), 0) FROM ordering_outboxevent")
    [(taken,)] = rows(cluster.monolith.source_db, "SELECT COALESCE(MAX(position), 0) FROM "
                                                  "outbox_consumerposition WHERE stream = ?",
                      ("ordering",))
    return int(taken) >= int(head)


@dataclass
class Verdict:
    """What the checker found; ``ok`` when every list is empty."""

    orders: int = 0
    sagas: Counter[str] = field(default_factory=Counter)
    lost: list[int] = field(default_factory=list)
    charge_without_order: list[str] = field(default_factory=list)
    paid_without_charge: list[int] = field(default_factory=list)
    double_reservation: list[str] = field(default_factory=list)
    stock: list[str] = field(default_factory=list)
    stuck: list[int] = field(default_factory=list)
    copy: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.charge_without_order or self.paid_without_charge
                    or self.double_reservation or self.stock or self.stuck or self.copy)

    def summary(self) -> dict[str, Any]:
        return {"orders": self.orders, "sagas": dict(self.sagas), "lost": len(self.lost),
                "charge_without_order": len(self.charge_without_order),
                "paid_without_charge": len(self.paid_without_charge),
                "double_reservation": len(self.double_reservation),
                "stock": len(self.stock), "stuck": len(self.stuck), "copy": len(self.copy),
                "examples": (self.lost + self.charge_without_order + self.paid_without_charge
                             + self.double_reservation + self.stock + self.stuck
                             + self.copy)[:5]}


def check(monolith_db: str, service_db: str, history: History, base: Baseline) -> Verdict:
    """Read both databases and count the violations (see the module doc)."""
    verdict = Verdict()
    status = {int(k): str(s) for k, s in rows(
        service_db, "SELECT id, status FROM ordering_order WHERE id > ?", (base.last_order,))}
    verdict.orders = len(status)
    verdict.lost = sorted(k for k in history.orders if k not in status)
    sagas = {int(k): str(s) for k, s in rows(service_db,
                                             "SELECT order_id, state FROM ordering_checkoutsaga")}
    verdict.sagas = Counter(sagas.values())
    verdict.stuck = sorted(k for k, s in sagas.items() if s.endswith("_requested"))
    charges: dict[int, list[str]] = {}
    for order, state in rows(monolith_db, "SELECT order_id, status FROM orders_paymentintent "
                                          "WHERE order_id > ?", (base.last_order,)):
        charges.setdefault(int(order), []).append(str(state))
    for order, states in charges.items():
        wanted = {"succeeded": "paid", "refunded": "cancelled"}.get(states[0])
        if len(states) > 1 or status.get(order) != wanted:
            verdict.charge_without_order.append(f"order {order}: charges {states}, "
                                                f"service says {status.get(order)}")
    verdict.paid_without_charge = sorted(
        k for k, s in status.items() if s == "paid" and charges.get(k) != ["succeeded"])
    _check_reservations(monolith_db, service_db, status, base, verdict)
    copy = {int(k): str(s) for k, s in rows(
        monolith_db, "SELECT id, status FROM orders_order WHERE id > ?", (base.last_order,))}
    verdict.copy = sorted(f"order {k}: {s} in the service, {copy.get(k)} in the monolith"
                          for k, s in status.items() if copy.get(k) != s)
    return verdict


def _check_reservations(monolith_db: str, service_db: str, status: dict[int, str],
                        base: Baseline, verdict: Verdict) -> None:
    lines = rows(service_db, "SELECT id, order_id, product_id, quantity FROM ordering_orderline "
                             "WHERE order_id > ?", (base.last_order,))
    held: Counter[int] = Counter()
    for line, units in rows(monolith_db, "SELECT order_line_id, quantity FROM "
                                         "store_stockreservation WHERE id > ? AND NOT released",
                            (base.last_reservation,)):
        held[int(line)] += int(units)
    for line, order, _, quantity in lines:
        reserved = held.get(int(line), 0)
        wanted = int(quantity) if status.get(int(order)) == "paid" else 0
        if reserved != wanted:
            verdict.double_reservation.append(f"line {line} of order {order} "
                                              f"({status.get(int(order))}): {reserved} units "
                                              f"reserved, {wanted} expected")
    moved: Counter[int] = Counter()
    for product, units in rows(monolith_db, "SELECT l.product_id, SUM(r.quantity) FROM "
                                            "store_stockreservation r JOIN store_stocklevel l "
                                            "ON l.id = r.stock_level_id WHERE r.id > ? AND NOT "
                                            "r.released GROUP BY l.product_id",
                               (base.last_reservation,)):
        moved[int(product)] = int(units)
    now = dict(rows(monolith_db, "SELECT product_id, SUM(quantity) FROM store_stocklevel "
                                 "GROUP BY product_id"))
    for product, before in base.stock.items():
        if before - int(now.get(product, 0)) != moved.get(product, 0):
            verdict.stock.append(f"product {product}: {before} -> {now.get(product)} units, "
                                 f"{moved.get(product, 0)} reserved")
