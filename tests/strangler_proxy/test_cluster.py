"""Several ``strangler proxy`` processes sharing one flag state through a live PostgreSQL.

Real proxies (``python -m strangler.cli proxy``), real upstreams on 127.0.0.1, the machine's
PostgreSQL from ``STRANGLER_TEST_PG_URL``. "The database is away" is a real TCP relay in front
of PostgreSQL that the test cuts and restores (the shared server itself cannot be stopped).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from proxy_harness import (
    LoopThread,
    Upstream,
    answer_with,
    config_text,
    free_port,
    stop_process_group,
)

PG_URL = os.environ.get("STRANGLER_TEST_PG_URL", "")
pytestmark = pytest.mark.skipif(not PG_URL, reason="STRANGLER_TEST_PG_URL is not set: the "
                                "cluster tests need a live PostgreSQL (e.g. "
                                "postgresql://postgres@127.0.0.1:5432/strangler_test)")
AUTH = {"Authorization": "Bearer secret-token"}
ROUTES = ('[[routes]]\nname = "catalog"\nmatch = { path_prefix = "/api/products/" }\n'
          'mode = "monolith"\ntarget = "catalog"\n')


@dataclass
class Replica:
    config: Path
    port: int
    admin: int
    proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, timeout: float = 2.0) -> Any:
        reply = httpx.get(f"http://127.0.0.1:{self.admin}{path}", headers=AUTH,
                          timeout=timeout)
        return reply.json()

    def mode(self) -> str:
        return str(self.get("/routes")["routes"][0]["mode"])

    def cluster(self) -> dict[str, Any]:
        return dict(self.get("/status")["cluster"])


@dataclass
class Cluster:
    replicas: list[Replica]
    upstreams: dict[str, Upstream]
    name: str
    loop: LoopThread
    extra: list[Any] = field(default_factory=list)


def _start(replica: Replica) -> None:
    replica.proc = subprocess.Popen(
        [sys.executable, "-m", "strangler.cli", "proxy", "--config", str(replica.config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait(check: Any, timeout: float, what: str, step: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError, TypeError):
            last = check()
            if last:
                return last
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


@contextlib.contextmanager
def cluster(tmp_path: Path, count: int, databases: list[str] | None = None,
            poll: float = 0.2) -> Iterator[Cluster]:
    loop = LoopThread()
    ups = {n: Upstream(n, answer_with(n)) for n in ("monolith", "catalog")}
    name = f"t{uuid.uuid4().hex[:12]}"
    replicas: list[Replica] = []
    try:
        for up in ups.values():
            loop.run(up.start())
        for index in range(count):
            port, admin = free_port(), free_port()
            database = (databases or [])[index] if databases else PG_URL
            text = config_text({n: u.url for n, u in ups.items()}, ROUTES).replace(
                'listen = "127.0.0.1:0"\nreload', f'listen = "127.0.0.1:{port}"\nreload', 1,
            ).replace('listen = "127.0.0.1:0"\ntoken', f'listen = "127.0.0.1:{admin}"\ntoken', 1)
            text += (f'\n[cluster]\ndatabase = "{database}"\nname = "{name}"\n'
                     f'replica_id = "r{index}"\npoll_interval = {poll}\ntimeout = 1\n')
            folder = tmp_path / f"r{index}"
            folder.mkdir()
            (folder / "strangler.toml").write_text(text)
            replicas.append(Replica(folder / "strangler.toml", port, admin))
        for replica in replicas:
            _start(replica)
        for replica in replicas:
            _wait(lambda r=replica: r.cluster()["database"] == "up", 20, "replica up")
        yield Cluster(replicas, ups, name, loop)
    finally:
        for replica in replicas:
            if replica.proc is not None:
                stop_process_group(replica.proc)
        for up in ups.values():
            with contextlib.suppress(Exception):
                loop.run(up.stop())
        loop.close()


class Load:
    """Clients sending GETs to every replica without pause; every failure is kept."""

    def __init__(self, replicas: list[Replica]) -> None:
        self.replicas = replicas
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(r,), daemon=True)
                        for r in replicas]

    def _run(self, replica: Replica) -> None:
        with httpx.Client(base_url=replica.url, timeout=5.0) as client:
            while not self.stop.is_set():
                try:
                    reply = client.get("/api/products/1")
                    if reply.status_code == 200 and reply.text in ("monolith", "catalog"):
                        self.ok += 1
                    else:
                        self.failures.append(f"{replica.port}: {reply.status_code} "
                                             f"{reply.text[:80]!r}")
                except httpx.HTTPError as exc:
                    self.failures.append(f"{replica.port}: {exc!r}")

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


def flip(replica: Replica, mode: str) -> None:
    reply = httpx.put(f"http://127.0.0.1:{replica.admin}/routes/catalog", headers=AUTH,
                      json={"mode": mode, "force": True, "reason": "cluster test"}, timeout=5)
    assert reply.status_code == 200, reply.text


def test_three_replicas_take_every_flip_under_load_within_one_second(tmp_path: Path) -> None:
    # given three replicas of one cluster and clients hammering all three
    with cluster(tmp_path, 3) as c, Load(c.replicas) as load:
        times: list[float] = []
        for index in range(30):
            mode = "service" if index % 2 == 0 else "monolith"
            source = c.replicas[index % 3]
            # when a flip is made on one replica (admin API: edited, audited, published)
            started = time.monotonic()
            flip(source, mode)
            # then every replica serves it, each well within a second
            for replica in c.replicas:
                _wait(lambda r=replica, m=mode: r.mode() == m, 1.0, f"flip {index} -> {mode}",
                      step=0.005)
            times.append(time.monotonic() - started)
        time.sleep(0.2)
    assert load.failures == [], load.failures[:5]
    assert load.ok > 100
    times.sort()
    p50, p99 = statistics.median(times), times[int(len(times) * 0.99) - 1]
    print(f"\nconvergence over {len(times)} flips, 3 replicas: p50 {p50 * 1000:.0f} ms, "
          f"p99 {p99 * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms; {load.ok} requests, "
          f"{len(load.failures)} failed")
    assert times[-1] < 1.0
    # and each replica's audit log holds every flip, wherever it was made
    for replica in c.replicas:
        audit = (replica.config.parent / "strangler.toml.audit.jsonl").read_text()
        assert audit.count('"route": "catalog"') == 30, replica.config
