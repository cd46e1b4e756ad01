"""Guarded rollouts driven by a real proxy against real upstreams on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from proxy_harness import Handler, Request, Running, answer_with, response, running_proxy

from strangler.cli import main
from strangler_proxy.config import load_config
from strangler_proxy.control.audit import read_audit
from strangler_proxy.control.rollout import load_states, state_path
from strangler_proxy.control.routes_edit import apply_route_change

INTERVAL = 0.5


def rollout_routes(steps: str = '[10, 50, 100, "service"]', mode: str = "monolith",
                   extra: str = "") -> str:
    return f'''
[[routes]]
name = "catalog"
match = {{ path_prefix = "/api/products/" }}
mode = "{mode}"
target = "catalog"
sticky = "header:X-User-Id"

[routes.rollout]   # the plan under test
steps = {steps}
interval = {INTERVAL}
min_requests = 5
latency = {{ max_ratio = 3, slack_ms = 50 }}
{extra}
'''


def admin(running: Running, method: str, path: str, body: dict[str, Any] | None = None,
          ) -> tuple[int, Any]:
    host, port = running.app.admin_address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request(method, path, json.dumps(body) if body is not None else None,
                     {"Authorization": "Bearer secret-token"})
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read())
    finally:
        conn.close()


class Traffic:
    """Clients in a thread: one request every few ms, a new user each time; every answer kept."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.results: list[tuple[int, str]] = []  # (status, X-Strangler-Route)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        user = 0
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        while not self.stop.is_set():
            user += 1
            try:
                conn.request("GET", f"/api/products/{user % 7}/", headers={
                    "X-User-Id": f"user-{user}"})
                reply = conn.getresponse()
                reply.read()
                self.results.append((reply.status, reply.getheader("X-Strangler-Route", "")))
            except (OSError, http.client.HTTPException):
                self.results.append((0, "connection failed"))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            time.sleep(0.003)
        conn.close()


@contextmanager
def traffic(running: Running) -> Iterator[Traffic]:
    t = Traffic(running.port)
    t.thread.start()
    try:
        yield t
    finally:
        t.stop.set()
        t.thread.join(10)


def wait_for_status(running: Running, statuses: set[str], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        _, body = admin(running, "GET", "/rollouts/catalog")
        view = body["rollouts"]["catalog"]
        if view["status"] in statuses:
            return view
        time.sleep(0.05)
    raise AssertionError(f"rollout still {view.get('status')} after {timeout} s: {view}")


def failing_service() -> Handler:
    async def handler(req: Request, transport: Any) -> None:
        transport.write(response(503, b"broken"))
    return handler


def test_a_rollout_against_a_healthy_service_reaches_service(tmp_path: Path) -> None:
    handlers = {"monolith": answer_with("monolith"), "catalog": answer_with("catalog")}
    with running_proxy(tmp_path, handlers, routes=rollout_routes()) as running, \
            traffic(running) as clients:
        # when the rollout is started over the admin API
        status, body = admin(running, "POST", "/rollouts/catalog",
                             {"action": "start", "who": "tester"})
        assert status == 200, body
        # then it steps up by itself, all the way to service
        view = wait_for_status(running, {"done", "rolled_back", "aborted"}, timeout=30)
        assert view["status"] == "done", view["history"]
        assert load_config(running.config_path).route("catalog").mode == "service"
        time.sleep(0.2)
    # and no client request failed on the way
    assert clients.results
    assert [r for r in clients.results if r[0] != 200] == []
    assert any("target=catalog" in r[1] for r in clients.results)
    # and every flip is in the audit log, made by the rollout
    flips = [r for r in read_audit(running.config_path) if "mode" in r["new"]]
    assert [(r["new"]["mode"], r["new"]["percent"]) for r in flips] == [
        ("canary", 10), ("canary", 50), ("canary", 100), ("service", 100)]
    assert {r["via"] for r in flips} == {"rollout"}
    # and each step waited its interval on enough traffic
    steps = [h for h in view["history"] if h["kind"] == "flip"]
    assert len(steps) == 4


def test_a_faulty_service_is_rolled_back_within_one_interval(tmp_path: Path) -> None:
    handlers = {"monolith": answer_with("monolith"), "catalog": failing_service()}
    with running_proxy(tmp_path, handlers, routes=rollout_routes()) as running, \
            traffic(running) as clients:
        status, _ = admin(running, "POST", "/rollouts/catalog", {"action": "start"})
        assert status == 200
        started = time.monotonic()
        view = wait_for_status(running, {"done", "rolled_back", "aborted"}, timeout=20)
        took = time.monotonic() - started
        time.sleep(0.3)  # requests after the rollback all go to the monolith
        after = len(clients.results)
        time.sleep(0.3)
    # then the rollout rolled the route back by itself, within one interval of its first step
    assert view["status"] == "rolled_back", view["history"]
    assert view["current"] is None  # back before its first step: the route is the monolith's
    assert took < INTERVAL + 0.5, took
    assert load_config(running.config_path).route("catalog").mode == "monolith"
    rollback = [h for h in view["history"] if h["kind"] == "rollback"][0]
    assert "error_rate" in rollback["text"]
    assert "errors" in rollback["text"]
    # and the only failed requests are the ones the faulty service answered itself
    failed = [r for r in clients.results if r[0] != 200]
    assert failed, "the faulty service served nobody: the test proved nothing"
    assert all(r[0] == 503 and "target=catalog" in r[1] for r in failed), failed[:5]
    assert all(r[0] == 200 for r in clients.results[after:])
    # and the rollback is audited with the numbers
    audit = [r for r in read_audit(running.config_path) if r["new"].get("mode") == "monolith"]
    assert audit
    assert "lower bound" in audit[-1]["reason"]
    assert audit[-1]["via"] == "rollout"


def test_dry_run_checks_are_reported_but_never_act(tmp_path: Path) -> None:
    handlers = {"monolith": answer_with("monolith"), "catalog": failing_service()}
    routes = rollout_routes(steps="[10, 50]", extra="error_rate = { dry_run = true }")
    with running_proxy(tmp_path, handlers, routes=routes) as running, traffic(running):
        admin(running, "POST", "/rollouts/catalog", {"action": "start"})
        view = wait_for_status(running, {"done", "rolled_back"}, timeout=20)
    assert view["status"] == "done"
    assert load_config(running.config_path).route("catalog").percent == 50


def test_no_traffic_never_advances_and_the_cli_actions_are_audited(tmp_path: Path) -> None:
    handlers = {"monolith": answer_with("monolith"), "catalog": answer_with("catalog")}
    with running_proxy(tmp_path, handlers, routes=rollout_routes()) as running:
        admin(running, "POST", "/rollouts/catalog", {"action": "start", "who": "ann"})
        time.sleep(INTERVAL * 4)
        _, body = admin(running, "GET", "/rollouts/catalog")
        view = body["rollouts"]["catalog"]
        # no requests: the first step holds
        assert (view["status"], view["current"]) == ("running", "canary 10%")
        assert admin(running, "POST", "/rollouts/catalog", {"action": "pause"})[0] == 200
        status, body = admin(running, "POST", "/rollouts/catalog", {"action": "promote",
                                                                       "who": "ann"})
        assert status == 200
        assert body["rollouts"]["catalog"]["current"] == "canary 50%"
        status, body = admin(running, "POST", "/rollouts/catalog", {"action": "abort"})
        assert body["rollouts"]["catalog"]["status"] == "aborted"
        assert load_config(running.config_path).route("catalog").mode == "monolith"
        status, body = admin(running, "POST", "/rollouts/catalog", {"action": "resume"})
        assert status == 409
        assert "no rollout in progress" in body["error"]
    actions = [r["new"]["rollout"] for r in read_audit(running.config_path)
               if "rollout" in r["new"]]
    assert actions == ["running", "paused", "running", "aborted"]


def test_the_state_survives_a_restart(tmp_path: Path) -> None:
    handlers = {"monolith": answer_with("monolith"), "catalog": answer_with("catalog")}
    with running_proxy(tmp_path, handlers, routes=rollout_routes()) as running:
        admin(running, "POST", "/rollouts/catalog", {"action": "start"})
        time.sleep(INTERVAL)
    assert state_path(running.config_path).exists()
    saved = load_states(running.config_path)["catalog"]
    assert (saved.status, saved.step) == ("running", 0)
    # a proxy started on the same file picks the rollout up and drives it on
    (tmp_path / "again").mkdir()
    text = running.config_path.read_text()
    with running_proxy(tmp_path / "again", handlers, routes="") as again:
        again.config_path.write_text(text.replace(
            str(running.upstreams["catalog"].url), again.upstreams["catalog"].url).replace(
            str(running.upstreams["monolith"].url), again.upstreams["monolith"].url))
        state_path(again.config_path).write_text(state_path(running.config_path).read_text())
        again.app.reload(force=True)
        from strangler_proxy.control.rollout import RolloutDriver
        driver = RolloutDriver(again.app)
        assert driver.states["catalog"].status == "running"
        again.app.rollouts = driver
        with traffic(again):
            again.loop.run(_drive(driver, 30))
        assert driver.states["catalog"].status == "done"


async def _drive(driver: Any, seconds: float) -> None:
    import asyncio
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and driver.states["catalog"].status == "running":
        await driver.tick()
        await asyncio.sleep(0.05)


def test_the_cli_starts_and_shows_a_rollout(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    handlers = {"monolith": answer_with("monolith"), "catalog": answer_with("catalog")}
    with running_proxy(tmp_path, handlers, routes=rollout_routes()) as running:
        path = running.config_path
        path.write_text(path.read_text().replace(
            'listen = "127.0.0.1:0"\ntoken', f'listen = "{running.app.admin_address}"\ntoken'))
        running.app.reload(force=True)
        main(["rollout", "catalog", "start", "--config", str(path)])
        started = capsys.readouterr().out
        main(["rollout", "catalog", "--config", str(path), "--json"])
        view = json.loads(capsys.readouterr().out)["rollouts"]["catalog"]
        with pytest.raises(SystemExit):
            main(["rollout", "orders", "start", "--config", str(path)])
        refused = capsys.readouterr().err
    assert started.startswith("catalog: running, step ")
    assert "plan: " in started
    assert view["status"] == "running"
    assert view["started_by"]
    assert "no [routes.rollout] plan" in refused or "no route" in refused


def test_actions_are_refused_where_they_make_no_sense(tmp_path: Path) -> None:
    handlers = {"monolith": answer_with("monolith"), "catalog": answer_with("catalog")}
    with running_proxy(tmp_path, handlers, routes=rollout_routes()) as running:
        def act(action: str) -> tuple[int, Any]:
            return admin(running, "POST", "/rollouts/catalog", {"action": action})

        # given: no rollout yet
        assert act("resume") == (409, {"error": "catalog: no rollout in progress (none); "
                                                "start one with `strangler rollout catalog "
                                                "start`"})
        assert act("start")[0] == 200  # no traffic: it holds at its first step
        # then: each action only where it means something
        assert "running, not paused; nothing to resume" in act("resume")[1]["error"]
        assert act("pause")[0] == 200
        assert "already paused; nothing to pause" in act("pause")[1]["error"]
        assert "already paused" in act("start")[1]["error"]
        assert act("abort")[0] == 200
        status, body = act("abort")
        assert status == 409
        assert "no rollout in progress (aborted)" in body["error"]
        assert act("promote")[0] == 409
    # and the refusals changed nothing: only start, pause and abort are audited
    actions = [r["new"]["rollout"] for r in read_audit(running.config_path)
               if "rollout" in r["new"]]
    assert actions == ["running", "paused", "aborted"]


def test_a_route_already_in_service_is_not_rolled_out(tmp_path: Path) -> None:
    handlers = {"monolith": answer_with("monolith"), "catalog": answer_with("catalog")}
    with running_proxy(tmp_path, handlers, routes=rollout_routes(mode="service")) as running:
        status, body = admin(running, "POST", "/rollouts/catalog", {"action": "start"})
    assert status == 409
    assert "catalog is already in service mode" in body["error"]
    assert load_config(running.config_path).route("catalog").mode == "service"


def test_a_rollback_that_failed_is_retried(tmp_path: Path) -> None:
    handlers = {"monolith": answer_with("monolith"), "catalog": failing_service()}
    with running_proxy(tmp_path, handlers, routes=rollout_routes()) as running:
        admin(running, "POST", "/rollouts/catalog", {"action": "start"})
        wait_for_current(running, "canary 10%")
        # given: the routes file cannot be edited (the proxy keeps its last good config)
        good = running.config_path.read_text()
        running.config_path.write_text(good + "\nthis is not TOML\n")
        # when: the faulty service fails the checks
        with traffic(running) as clients:
            view = wait_for_status(running, {"rolling_back"}, timeout=10)
            assert any(h["kind"] == "rollback failed" for h in view["history"])
            # then: the proxy keeps trying, and the flip lands once the file can be edited
            running.config_path.write_text(good)
            view = wait_for_status(running, {"rolled_back"}, timeout=10)
            time.sleep(0.3)
            after = len(clients.results)
            time.sleep(0.3)
    assert load_config(running.config_path).route("catalog").mode == "monolith"
    assert all("target=monolith" in r[1] for r in clients.results[after:])
    assert [h["kind"] for h in view["history"]][-3:] == ["rollback failed", "rollback",
                                                         "rolled_back"]


def test_awaiting_cutover_ends_when_the_cutover_moves_the_route(tmp_path: Path) -> None:
    handlers = {"monolith": answer_with("monolith"), "catalog": answer_with("catalog")}
    routes = rollout_routes(steps='[10, 100, "service"]', extra='cutover = "catalog"')
    with running_proxy(tmp_path, handlers, routes=routes) as running:
        with traffic(running):
            admin(running, "POST", "/rollouts/catalog", {"action": "start"})
            view = wait_for_status(running, {"awaiting_cutover", "rolled_back"}, timeout=20)
        assert view["status"] == "awaiting_cutover", view["history"]
        # the proxy never moves data ownership: the route waits at canary 100%
        assert load_config(running.config_path).route("catalog").mode == "canary"
        status, body = admin(running, "POST", "/rollouts/catalog", {"action": "promote"})
        assert status == 409
        assert "waits for `strangler cutover catalog`" in body["error"]
        # when: the cutover flips the route (as `strangler cutover` does, via="cutover")
        apply_route_change(running.config_path, "catalog", "service", None, "cutover",
                           via="cutover", gate=lambda *_: Allowed())
        running.app.reload(force=True)
        # then: the rollout is done
        view = wait_for_status(running, {"done"}, timeout=5)
    assert view["history"][-1]["text"] == "strangler cutover moved the route to service"


@dataclass(frozen=True)
class Allowed:
    allowed: bool = True
    reason: str = "the cutover's own checks"


def wait_for_current(running: Running, current: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if admin(running, "GET", "/rollouts/catalog")[1]["rollouts"]["catalog"]["current"] \
                == current:
            return
        time.sleep(0.05)
    raise AssertionError(f"the rollout did not reach {current} in {timeout} s")
