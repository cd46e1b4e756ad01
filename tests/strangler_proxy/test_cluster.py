"""Several ``strangler proxy`` processes sharing one flag state through a live PostgreSQL.

Real proxies (``python -m strangler.cli proxy``), real upstreams on 127.0.0.1, the machine's
PostgreSQL from ``STRANGLER_TEST_PG_URL``. "The database is away" is a real TCP relay in front
of PostgreSQL that the test cuts and restores (the shared server itself cannot be stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
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
from urllib.parse import urlsplit

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

PG_URL = os.environ.get("STRANGLER_TEST_PG_URL") or os.environ.get("DATABASE_URL") or ""
pytestmark = pytest.mark.skipif(not PG_URL, reason="STRANGLER_TEST_PG_URL (or DATABASE_URL) "
                                "is not set: the cluster tests need a live PostgreSQL (e.g. "
                                "postgresql://postgres@127.0.0.1:5432/strangler_test)")
AUTH = {"Authorization": "Bearer secret-token"}
ROUTES = ('[[routes]]\nname = "catalog"\nmatch = { path_prefix = "/api/products/" }\n'
          'mode = "monolith"\ntarget = "catalog"\n')


def planned(interval: float) -> str:
    """ROUTES with a rollout plan: canary 50%, then service, ``interval`` seconds a step.

    What these tests judge is whose evidence the leader steps on, not latency: with five
    requests a side, the p99 is the slowest one, and one 241 ms stall on a busy CI machine
    once rolled a rollout back, so the latency allowance is wide (2 s)."""
    return (ROUTES + 'sticky = "header:X-User-Id"\n\n[routes.rollout]\n'
            f'steps = [50, "service"]\ninterval = {interval}\nmin_requests = 5\n'
            'latency = { max_ratio = 5, slack_ms = 2000 }\n')


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

    def mode(self, route: str = "catalog") -> str:
        routes = self.get("/routes")["routes"]
        return str(next(r["mode"] for r in routes if r["name"] == route))

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


def _start_on_free_ports(replica: Replica, attempts: int = 3) -> None:
    """Start ``replica`` and wait until its admin API answers.

    The ports were picked before the process binds them; another process's outgoing
    connection (a replica's PostgreSQL link, say) can take one meanwhile, and CI once saw a
    replica never come up. A replica that exits before answering is started again on new
    ports (``attempts`` in all); a last failure shows what the process printed."""
    for attempt in range(attempts):
        _start(replica)
        proc = replica.proc
        assert proc is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                replica.get("/status", timeout=0.5)
                return
            time.sleep(0.05)
        if proc.poll() is None:
            stop_process_group(proc)
            raise AssertionError(f"replica on admin port {replica.admin} did not answer in 20 s")
        printed = proc.stderr.read() if proc.stderr else ""
        stop_process_group(proc)
        if attempt == attempts - 1:
            raise AssertionError(f"replica exited with {proc.returncode}: {printed[-800:]}")
        port, admin = free_port(), free_port()
        text = replica.config.read_text().replace(
            f'"127.0.0.1:{replica.port}"', f'"127.0.0.1:{port}"', 1).replace(
            f'"127.0.0.1:{replica.admin}"', f'"127.0.0.1:{admin}"', 1)
        replica.config.write_text(text)
        replica.port, replica.admin = port, admin


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
            poll: float = 0.2, routes: str = ROUTES) -> Iterator[Cluster]:
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
            text = config_text({n: u.url for n, u in ups.items()}, routes).replace(
                'listen = "127.0.0.1:0"\nreload', f'listen = "127.0.0.1:{port}"\nreload', 1,
            ).replace('listen = "127.0.0.1:0"\ntoken', f'listen = "127.0.0.1:{admin}"\ntoken', 1)
            text += (f'\n[cluster]\ndatabase = "{database}"\nname = "{name}"\n'
                     f'replica_id = "r{index}"\npoll_interval = {poll}\ntimeout = 1\n')
            folder = tmp_path / f"r{index}"
            folder.mkdir()
            (folder / "strangler.toml").write_text(text)
            replicas.append(Replica(folder / "strangler.toml", port, admin))
        for replica in replicas:
            _start_on_free_ports(replica)
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


def converge(admins: list[httpx.Client], mode: str, started: float,
             timeout: float = 1.0) -> float:
    """Poll every replica's admin API in turn (kept-alive) until all serve ``mode``."""
    waiting = set(range(len(admins)))
    while waiting:
        for index in sorted(waiting):
            if admins[index].get("/routes").json()["routes"][0]["mode"] == mode:
                waiting.discard(index)
        elapsed = time.monotonic() - started
        assert elapsed < timeout, f"replicas {sorted(waiting)} still not at {mode}"
    return time.monotonic() - started


def test_three_replicas_take_every_flip_under_load_within_one_second(tmp_path: Path) -> None:
    # given three replicas of one cluster and clients hammering all three
    # (the poll is 5 s, so only LISTEN/NOTIFY can bring a flip within the second)
    with cluster(tmp_path, 3, poll=5.0) as c, Load(c.replicas) as load, \
            contextlib.ExitStack() as stack:
        admins = [stack.enter_context(httpx.Client(base_url=f"http://127.0.0.1:{r.admin}",
                                                   headers=AUTH, timeout=2.0))
                  for r in c.replicas]
        calls: list[float] = []
        times: list[float] = []
        for index in range(30):
            mode = "service" if index % 2 == 0 else "monolith"
            # when a flip is made on one replica (admin API: edited, audited, published)
            started = time.monotonic()
            reply = admins[index % 3].put("/routes/catalog", json={
                "mode": mode, "force": True, "reason": "cluster test"})
            assert reply.status_code == 200, reply.text
            calls.append(time.monotonic() - started)
            # then every replica serves it within a second of the flip
            times.append(converge(admins, mode, started))
        time.sleep(0.2)
    assert load.failures == [], load.failures[:5]
    assert load.ok > 100
    times.sort()
    p50, p99 = statistics.median(times), times[int(len(times) * 0.99) - 1]
    print(f"\nconvergence over {len(times)} flips, 3 replicas (from the flip request to all "
          f"serving it): p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max "
          f"{times[-1] * 1000:.0f} ms (the flip request itself: p50 "
          f"{statistics.median(calls) * 1000:.0f} ms); {load.ok} requests, "
          f"{len(load.failures)} failed")
    # and each replica's audit log holds every flip, wherever it was made
    for replica in c.replicas:
        audit = (replica.config.parent / "strangler.toml.audit.jsonl").read_text()
        assert audit.count('"route": "catalog"') == 30, replica.config


class Relay:
    """A TCP relay in front of PostgreSQL that can be cut (every connection reset) and restored."""

    def __init__(self, loop: LoopThread) -> None:
        parts = urlsplit(PG_URL)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self.loop = loop
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    def url(self) -> str:
        parts = urlsplit(PG_URL)
        user = f"{parts.username}@" if parts.username else ""
        return parts._replace(netloc=f"{user}127.0.0.1:{self.port}").geturl()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers += [writer, up_writer]
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def start(self) -> None:
        async def start() -> None:
            self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
            self.port = self.server.sockets[0].getsockname()[1]
        self.loop.run(start())

    def cut(self) -> None:
        async def cut() -> None:
            assert self.server is not None
            self.server.close()
            for writer in self.writers:
                writer.transport.abort()
            self.writers.clear()
        self.loop.run(cut())


def test_a_replica_whose_database_is_away_serves_its_last_good_table_and_catches_up(
        tmp_path: Path) -> None:
    relay = Relay(LoopThread())
    relay.start()
    try:
        # given two replicas, the second reaching PostgreSQL through a relay
        brands = ROUTES.replace('"catalog"\nmatch = { path_prefix = "/api/products/" }',
                                '"brands"\nmatch = { path_prefix = "/api/brands/" }')
        with cluster(tmp_path, 2, databases=[PG_URL, relay.url()],
                     routes=ROUTES + brands) as c, Load(c.replicas) as load:
            first, second = c.replicas
            # when its database goes away and a flip is made on the other replica
            relay.cut()
            _wait(lambda: second.cluster()["database"] == "away", 5, "database away")
            flip(first, "service")
            time.sleep(1.0)
            # then it keeps serving its last good table, without failing a request
            assert (first.mode(), second.mode()) == ("service", "monolith")
            served = httpx.get(f"{second.url}/api/products/1", timeout=2)
            assert (served.status_code, served.text) == (200, "monolith")
            # and a flip of another route made on it meanwhile is served by it alone
            reply = httpx.put(f"http://127.0.0.1:{second.admin}/routes/brands", headers=AUTH,
                              json={"mode": "shadow"}, timeout=5)
            assert reply.status_code == 200, reply.text
            # when the database returns, it takes the flip it missed, and the other replica
            # takes its flip, neither undoing the other
            relay.start()
            back = time.monotonic()
            _wait(lambda: second.mode() == "service", 5, "catch-up")
            caught_up = time.monotonic() - back
            _wait(lambda: first.mode("brands") == "shadow", 5, "the other way")
            assert [(r.mode(), r.mode("brands")) for r in c.replicas] == [("service",
                                                                           "shadow")] * 2
            assert second.cluster()["database"] == "up"
            for replica in c.replicas:  # with the audit of both flips
                audit = (replica.config.parent / "strangler.toml.audit.jsonl").read_text()
                assert audit.count('"new": {"mode": ') == 2, replica.config
        assert load.failures == [], load.failures[:5]
        print(f"\ncaught up {caught_up * 1000:.0f} ms after the database returned; "
              f"{load.ok} requests, 0 failed")
    finally:
        with contextlib.suppress(Exception):
            relay.cut()
        relay.loop.close()


def test_evidence_is_summed_over_replicas_and_a_dead_leader_is_replaced(
        tmp_path: Path) -> None:
    with cluster(tmp_path, 3) as c:
        # given 5 requests through each of three replicas
        for replica in c.replicas:
            for _ in range(5):
                assert httpx.get(f"{replica.url}/api/products/1", timeout=2).status_code == 200
        # then every replica's evidence (what its rollout checks read) counts all 15
        for replica in c.replicas:
            _wait(lambda r=replica: r.get("/evidence?window=300")["routes"]["catalog"][
                "monolith"]["requests"] == 15, 5, "evidence summed over the replicas")
        # given exactly one leader
        leaders = _wait(lambda: [r for r in c.replicas if r.cluster()["leader"]], 5, "a leader")
        assert len(leaders) == 1
        old = leaders[0]
        rest = [r for r in c.replicas if r is not old]
        assert all(r.cluster()["leader_replica"] == old.cluster()["replica"] for r in rest)
        # and a follower sends rollout actions to it
        refused = httpx.post(f"http://127.0.0.1:{rest[0].admin}/rollouts/catalog",
                             headers=AUTH, json={"action": "start"}, timeout=2)
        assert refused.status_code == 409
        assert f"at 127.0.0.1:{old.admin}" in refused.json()["error"]
        # when the leader dies
        assert old.proc is not None
        os.killpg(old.proc.pid, signal.SIGKILL)
        died = time.monotonic()
        # then another replica takes the lead
        new = _wait(lambda: [r for r in rest if r.cluster()["leader"]], 5, "a new leader",
                    step=0.01)
        takeover = time.monotonic() - died
        assert len(new) == 1
        print(f"\nleader takeover {takeover:.2f} s after the leader was killed")


def _leader(c: Cluster) -> Replica:
    leaders = _wait(lambda: [r for r in c.replicas if r.cluster()["leader"]], 5, "a leader")
    assert len(leaders) == 1
    return leaders[0]


def _rollout(replica: Replica, action: str) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{replica.admin}/rollouts/catalog", headers=AUTH,
                      json={"action": action, "who": "tester"}, timeout=5)


def test_the_leader_rolls_out_on_the_other_replicas_evidence(tmp_path: Path) -> None:
    with cluster(tmp_path, 3, routes=planned(0.6)) as c:
        leader = _leader(c)
        followers = [r for r in c.replicas if r is not leader]
        stop = threading.Event()
        failed: list[str] = []

        def users(replica: Replica) -> None:  # traffic to the followers only
            with httpx.Client(base_url=replica.url, timeout=5.0) as client:
                n = 0
                while not stop.is_set():
                    n += 1
                    reply = client.get("/api/products/1", headers={"X-User-Id": f"u{n}"})
                    if reply.status_code != 200:
                        failed.append(reply.text)
                    time.sleep(0.005)

        threads = [threading.Thread(target=users, args=(r,), daemon=True) for r in followers]
        for thread in threads:
            thread.start()
        try:
            # when the leader runs a rollout, and sees no request of its own
            assert _rollout(leader, "start").status_code == 200
            view = _wait(lambda: leader.get("/rollouts/catalog")["rollouts"]["catalog"]
                         if leader.get("/rollouts/catalog")["rollouts"]["catalog"]["status"]
                         != "running" else None, 30, "the rollout to finish", step=0.1)
        finally:
            stop.set()
            for thread in threads:
                thread.join(10)
        # then it stepped up on the followers' evidence, and every replica serves the service
        assert view["status"] == "done", view["history"]
        assert [h["kind"] for h in view["history"]].count("flip") == 2
        for replica in c.replicas:
            _wait(lambda r=replica: r.mode() == "service", 2, "service everywhere")
        assert failed == []
        assert leader.get("/evidence?window=300")["routes"]["catalog"]["service"][
            "requests"] >= 5


def test_a_new_leader_carries_on_the_dead_leaders_rollout(tmp_path: Path) -> None:
    with cluster(tmp_path, 3, routes=planned(60)) as c:
        # given a rollout on its first step (a long interval: it stays there)
        old = _leader(c)
        assert _rollout(old, "start").status_code == 200
        for replica in c.replicas:
            _wait(lambda r=replica: r.mode() == "canary", 3, "canary everywhere")
        # when the leader dies
        assert old.proc is not None
        os.killpg(old.proc.pid, signal.SIGKILL)
        rest = [r for r in c.replicas if r is not old]
        new = _wait(lambda: [r for r in rest if r.cluster()["leader"]], 5, "a new leader")[0]
        # then the new leader has the rollout, still running at its step, and drives it
        state = new.get("/rollouts/catalog")["rollouts"]["catalog"]
        assert (state["status"], state["current"]) == ("running", "canary 50%")
        assert _rollout(new, "abort").status_code == 200
        for replica in rest:
            _wait(lambda r=replica: r.mode() == "monolith", 3, "the abort everywhere")


def _restart(replica: Replica) -> None:
    assert replica.proc is not None
    stop_process_group(replica.proc)
    _start(replica)
    _wait(lambda: replica.cluster()["database"] == "up", 20, "replica back")


def test_a_restarted_replica_takes_the_newest_version_or_publishes_its_own_edit(
        tmp_path: Path) -> None:
    with cluster(tmp_path, 2) as c:
        first, second = c.replicas
        original = second.config.read_text()
        flip(first, "service")
        _wait(lambda: second.mode() == "service", 2, "the flip on the second replica")
        # given the second replica stopped, its file put back to a version published before
        assert second.proc is not None
        stop_process_group(second.proc)
        second.config.write_text(original)
        # when it starts again, then it takes the newest version, not its old file
        _restart(second)
        _wait(lambda: second.mode() == "service", 3, "the newest version")
        assert 'mode = "service"' in second.config.read_text()
        # given it stopped and its file edited by hand into something never published
        stop_process_group(second.proc)
        edited = second.config.read_text().replace("read_timeout = 2", "read_timeout = 3")
        second.config.write_text(edited.replace('mode = "service"', 'mode = "shadow"'))
        # when it starts again, then its edit is published and the other replica takes it
        _restart(second)
        _wait(lambda: first.mode() == "shadow", 3, "the edit on the first replica")
        assert "read_timeout = 3" in first.config.read_text()
        # and the first replica kept its own listeners
        assert f"127.0.0.1:{first.port}" in first.config.read_text()


NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "")
FRONT = Path(__file__).resolve().parents[2] / "extracted" / "deploy" / "nginx-scale.conf"


def _front_conf(tmp: Path, listen: int, replicas: list[Replica]) -> str:
    """The compose topology's nginx config, its container names pointed at our replicas."""
    text = FRONT.read_text()
    for index, replica in enumerate(replicas, 1):
        text = text.replace(f"proxy-{index}:8080", f"127.0.0.1:{replica.port}")
    for sub in ("body", "proxy"):
        (tmp / sub).mkdir(exist_ok=True)
    return ("daemon off;\n" + text.replace("pid /tmp/nginx.pid;", f"pid {tmp}/nginx.pid;\n"
                                           f"error_log {tmp}/error.log warn;")
            .replace("listen 8080;", f"listen 127.0.0.1:{listen};")
            .replace("http {", f"http {{\n    client_body_temp_path {tmp}/body;\n"
                     f"    proxy_temp_path {tmp}/proxy;", 1))


@pytest.mark.skipif(not NGINX, reason="nginx is not installed: `make sysdeps` (nginx-light)")
def test_nginx_in_front_of_two_replicas_serves_every_flip(tmp_path: Path) -> None:
    # given the compose topology's front: nginx over two replicas of one cluster
    with cluster(tmp_path, 2) as c:
        port = free_port()
        (tmp_path / "nginx").mkdir()
        conf = tmp_path / "nginx" / "nginx.conf"
        conf.write_text(_front_conf(tmp_path / "nginx", port, c.replicas))
        nginx = subprocess.Popen([NGINX, "-p", str(tmp_path / "nginx"), "-c", str(conf)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 start_new_session=True)
        try:
            front = Replica(conf, port, 0)
            _wait(lambda: httpx.get(f"{front.url}/api/products/1", timeout=1).text, 10,
                  "nginx up")
            with Load([front]) as load, httpx.Client(base_url=front.url, timeout=5) as client, \
                    contextlib.ExitStack() as stack:
                admins = [stack.enter_context(httpx.Client(
                    base_url=f"http://127.0.0.1:{r.admin}", headers=AUTH, timeout=2.0))
                    for r in c.replicas]
                for index in range(6):
                    # when a route is flipped on either replica
                    mode = "service" if index % 2 == 0 else "monolith"
                    started = time.monotonic()
                    flip(c.replicas[index % 2], mode)
                    converge(admins, mode, started)
                    # then every request through nginx, to either replica, gets that side
                    side = "catalog" if mode == "service" else "monolith"
                    assert {client.get("/api/products/1").text for _ in range(6)} == {side}
            assert load.failures == [], load.failures[:5]
            assert load.ok > 20
        finally:
            stop_process_group(nginx)
