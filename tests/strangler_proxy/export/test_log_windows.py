"""Rollouts read their evidence from an exported nginx's JSON access log when nginx serves.

The reader follows the file (new bytes only, unfinished lines kept, rotation noticed); a
rollout with ``[export] engine = "nginx"`` steps up and rolls back on what a real nginx
logged, since the proxy's own counters see none of the clients' requests then.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from engine_harness import need, start_engine
from proxy_harness import Handler, Request, Running, answer_with, response, running_proxy

from strangler_proxy.config import load_config
from strangler_proxy.control.audit import read_audit
from strangler_proxy.export.apply import stage_export
from strangler_proxy.export.log_windows import LogWindows, engine_log_path

T0 = 1_800_000_000  # 2027-01-15T08:00:00Z


def line(second: int, route: str = "catalog", side: str = "service", status: int = 200,
         latency_s: float = 0.004) -> str:
    when = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(second))
    return json.dumps({"time": when, "route": route, "side": side, "upstream": side,
                       "status": status, "latency_s": latency_s}) + "\n"


def test_the_log_is_followed_and_windows_count_each_side(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    windows = LogWindows(log)
    assert windows.read_new() == 0  # nginx has not written it yet
    # given: two records, a notice, and half a line nginx has not finished
    half = line(T0 + 2, status=503)
    log.write_text(line(T0 + 1) + "nginx: a notice\n" + line(T0 + 1, side="monolith")
                   + half[:20])
    assert windows.read_new() == 2
    assert windows.skipped == 1
    # when: the rest of the line arrives
    with log.open("a") as handle:
        handle.write(half[20:] + line(T0 + 3, latency_s=0.3))
    assert windows.read_new() == 2
    # then: a window has both sides, statuses and latencies
    w = windows.between("catalog", T0, T0 + 10)
    assert (w.service.requests, w.service.errors, w.monolith.requests) == (3, 1, 1)
    assert w.service.classes == (2, 0, 0, 1)
    assert (w.service.quantile(0.99) or 0) > 0.25
    # and a window starting mid-second leaves that second out (it may hold the step before)
    assert windows.between("catalog", T0 + 1.5, T0 + 10).service.requests == 2
    assert windows.between("orders", T0, T0 + 10).monolith.requests == 0


def test_a_rotated_log_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    windows = LogWindows(log)
    log.write_text(line(T0) * 5)
    assert windows.read_new() == 5
    log.write_text(line(T0 + 1))  # rotated: a new, shorter file
    assert windows.read_new() == 1
    assert windows.between("catalog", T0, T0 + 5).service.requests == 6


def test_only_an_exported_nginx_is_read(tmp_path: Path) -> None:
    base = ('[admin]\ntoken = "t"\n[upstreams.monolith]\nurl = "http://127.0.0.1:1"\n'
            '[export]\nengine = "{engine}"\noutput = "out/engine.conf"\n{extra}')
    path = tmp_path / "strangler.toml"
    path.write_text(base.format(engine="nginx", extra=""))
    assert engine_log_path(load_config(path)) == tmp_path / "out" / "access.log"
    path.write_text(base.format(engine="nginx", extra='runtime_dir = "/run/x"\n'))
    assert engine_log_path(load_config(path)) == Path("/run/x/access.log")
    path.write_text(base.format(engine="haproxy", extra=""))
    assert engine_log_path(load_config(path)) is None


# -- a real nginx ------------------------------------------------------------------------


def plan(extra: str = "") -> str:
    return '''
[[routes]]
name = "catalog"
match = { path_prefix = "/api/products/" }
mode = "monolith"
target = "catalog"
sticky = "header:X-User-Id"

[routes.rollout]
steps = [50, "service"]
interval = 1.0
min_requests = 5
latency = { max_ratio = 5, slack_ms = 200 }
''' + extra


@contextmanager
def nginx_in_front(running: Running, tmp_path: Path) -> Iterator[int]:
    """Export the proxy's routes file to nginx on a free port; yield that port."""
    need("nginx")
    from proxy_harness import free_port, stop_process_group

    port = free_port()
    text = running.config_path.read_text()
    running.config_path.write_text(text.replace(
        "[admin]", f'[export]\nengine = "nginx"\noutput = "{tmp_path}/nginx/nginx.conf"\n'
        f'listen = "127.0.0.1:{port}"\n\n[admin]', 1))
    running.app.reload(force=True)
    (tmp_path / "nginx").mkdir()
    staged = stage_export(load_config(running.config_path))
    assert staged is not None
    staged.install()
    proc = start_engine("nginx", staged.output, port, tmp_path / "nginx" / "engine.log")
    try:
        yield port
    finally:
        stop_process_group(proc)


@contextmanager
def clients(port: int) -> Iterator[list[int]]:
    """Requests to nginx from a new visitor each time, until the block ends; their statuses."""
    statuses: list[int] = []
    stop = threading.Event()

    def run() -> None:
        user = 0
        while not stop.is_set():
            user += 1
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request("GET", "/api/products/1/", headers={"X-User-Id": f"u{user}"})
                reply = conn.getresponse()
                reply.read()
                statuses.append(reply.status)
            except (OSError, http.client.HTTPException):
                statuses.append(0)
            finally:
                conn.close()
            time.sleep(0.01)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield statuses
    finally:
        stop.set()
        thread.join(10)


def rollout(running: Running, action: str | None = None) -> dict[str, Any]:
    host, port = running.app.admin_address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    body = json.dumps({"action": action}) if action else None
    conn.request("POST" if action else "GET", "/rollouts/catalog", body,
                 {"Authorization": "Bearer secret-token"})
    data = json.loads(conn.getresponse().read())
    conn.close()
    return data["rollouts"]["catalog"]  # type: ignore[no-any-return]


def wait_stopped(running: Running, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    view = rollout(running)
    while time.monotonic() < deadline and view["status"] in ("running", "rolling_back"):
        time.sleep(0.1)
        view = rollout(running)
    return view


def failing() -> Handler:
    async def handler(req: Request, transport: Any) -> None:
        transport.write(response(503, b"broken"))
    return handler


@pytest.mark.slow
def test_a_rollout_behind_nginx_steps_up_on_what_nginx_logged(tmp_path: Path) -> None:
    handlers = {"monolith": answer_with("monolith"), "catalog": answer_with("catalog")}
    with running_proxy(tmp_path, handlers, routes=plan()) as running, \
            nginx_in_front(running, tmp_path) as port, clients(port) as statuses:
        rollout(running, "start")
        view = wait_stopped(running, timeout=30)
        proxied = [key for key in running.app.total_metrics().cells if key[0] == "catalog"]
    # then: the proxy itself served nothing, yet the rollout reached service on nginx's log
    assert view["status"] == "done", view["history"]
    flips = [r for r in read_audit(running.config_path) if "mode" in r["new"]]
    assert [r["new"]["mode"] for r in flips] == ["canary", "service"]
    assert "service 0/" in flips[-1]["reason"]  # the evidence nginx logged, with its counts
    assert statuses.count(200) == len(statuses) > 0
    assert proxied == []


@pytest.mark.slow
def test_a_faulty_service_behind_nginx_is_rolled_back(tmp_path: Path) -> None:
    handlers = {"monolith": answer_with("monolith"), "catalog": failing()}
    with running_proxy(tmp_path, handlers, routes=plan()) as running, \
            nginx_in_front(running, tmp_path) as port, clients(port) as statuses:
        rollout(running, "start")
        view = wait_stopped(running, timeout=30)
    assert view["status"] == "rolled_back", view["history"]
    route = load_config(running.config_path).route("catalog")
    assert route is not None
    assert route.mode == "monolith"
    rollback = [h for h in view["history"] if h["kind"] == "rollback"][0]
    assert "error_rate: service" in rollback["text"]
    assert 503 in statuses  # nginx sent the service's errors: the evidence was real
