"""``strangler proxy`` as a user runs it: a real process, one or two workers, clean stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from proxy_harness import (
    LoopThread,
    Upstream,
    answer_with,
    config_text,
    free_port,
    stop_process_group,
)


@contextmanager
def upstream() -> Iterator[Upstream]:
    loop = LoopThread()
    up = Upstream("monolith", answer_with("monolith"))
    try:
        loop.run(up.start())
        yield up
    finally:
        loop.run(up.stop())
        loop.close()


@contextmanager
def proxy_process(config: Path, *args: str, env: dict[str, str] | None = None,
                  ) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "strangler.cli", "proxy", "--config", str(config), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, **(env or {})})
    try:
        yield proc
    except BaseException:
        # show what the proxy said (a worker's traceback, say) next to the failure
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        if proc.poll() is not None and proc.stderr is not None:
            sys.stderr.write(f"strangler proxy's stderr:\n{proc.stderr.read()}")
        raise
    finally:
        stop_process_group(proc)


def _wait_ok(url: str, timeout: float = 15.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=2, headers={"Authorization": "Bearer secret-token"})
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _config(tmp_path: Path, up: Upstream, port: int, admin: int) -> Path:
    path = tmp_path / "strangler.toml"
    text = config_text({"monolith": up.url}).replace(
        'listen = "127.0.0.1:0"\nreload', f'listen = "127.0.0.1:{port}"\nreload', 1).replace(
        'listen = "127.0.0.1:0"\ntoken', f'listen = "127.0.0.1:{admin}"\ntoken', 1)
    path.write_text(text)
    return path


def test_proxy_command_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    with upstream() as up:
        port, admin = free_port(), free_port()
        config = _config(tmp_path, up, port, admin)
        with proxy_process(config) as proc:
            got = _wait_ok(f"http://127.0.0.1:{port}/hello")
            health = _wait_ok(f"http://127.0.0.1:{admin}/healthz")
            os.killpg(proc.pid, signal.SIGTERM)
            code = proc.wait(10)
            out = proc.stdout.read() if proc.stdout else ""
    assert (got.status_code, got.text) == (200, "monolith")
    assert health.status_code == 200
    assert code == 0
    assert f"listening on http://127.0.0.1:{port}" in out


def test_two_workers_share_the_port(tmp_path: Path) -> None:
    with upstream() as up:
        port, admin = free_port(), free_port()
        config = _config(tmp_path, up, port, admin)
        with proxy_process(config, "--workers", "2") as proc:
            _wait_ok(f"http://127.0.0.1:{port}/warm")
            pids = set()
            for _ in range(40):  # new connections spread over the SO_REUSEPORT sockets
                got = httpx.get(f"http://127.0.0.1:{port}/x", timeout=5)
                assert got.status_code == 200
                pids.add(got.headers["x-request-id"].split("-")[0])
            os.killpg(proc.pid, signal.SIGTERM)
            code = proc.wait(15)
    assert len(pids) == 2, pids
    assert code == 0


def test_refuses_to_start_without_an_admin_token(tmp_path: Path) -> None:
    path = tmp_path / "strangler.toml"
    path.write_text(config_text({"monolith": "http://127.0.0.1:9"}).replace(
        'token = "secret-token"', 'token_env = "STRANGLER_TEST_NO_SUCH_TOKEN"'))
    done = subprocess.run([sys.executable, "-m", "strangler.cli", "proxy", "--config",
                           str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "no admin token" in done.stderr
    assert "Traceback" not in done.stderr


def _served_by(port: int, path: str, count: int) -> tuple[set[str], set[str]]:
    """Bodies and worker pids (from the request id) over ``count`` new connections."""
    bodies, pids = set(), set()
    for _ in range(count):
        got = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
        assert got.status_code == 200
        bodies.add(got.text)
        pids.add(got.headers["x-request-id"].split("-")[0])
    return bodies, pids


def _requests_total(metrics: str) -> int:
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in metrics.splitlines()
               if line.startswith("strangler_requests_total{"))


def test_admin_flip_reaches_every_worker_at_once_and_metrics_sum_them(tmp_path: Path) -> None:
    loop = LoopThread()
    catalog = Upstream("catalog", answer_with("catalog"))
    try:
        with upstream() as up:
            loop.run(catalog.start())
            port, admin = free_port(), free_port()
            config = _config(tmp_path, up, port, admin)
            routes = ('\n[[routes]]\nname = "catalog"\nmatch = { path_prefix = "/api/" }\n'
                      'mode = "monolith"\ntarget = "catalog"\n')
            # Polling off: only the admin's fan-out can bring the other worker up to date.
            config.write_text(config.read_text().replace("reload_interval = 0.05",
                                                         "reload_interval = 0")
                              + f'\n[upstreams.catalog]\nurl = "{catalog.url}"\n' + routes)
            with proxy_process(config, "--workers", "2"):
                _wait_ok(f"http://127.0.0.1:{port}/warm")
                before, pids_before = _served_by(port, "/api/p", 30)
                flip = httpx.put(f"http://127.0.0.1:{admin}/routes/catalog", timeout=10,
                                 headers={"Authorization": "Bearer secret-token"},
                                 json={"mode": "service", "force": True, "reason": "test"})
                time.sleep(0.3)  # a signal hop, not a poll interval
                after, pids_after = _served_by(port, "/api/p", 30)
                deadline = time.monotonic() + 5
                while True:  # workers publish their counters every PUBLISH_INTERVAL
                    metrics = _wait_ok(f"http://127.0.0.1:{admin}/metrics").text
                    if _requests_total(metrics) >= 61 or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
    finally:
        loop.run(catalog.stop())
        loop.close()
    assert flip.status_code == 200, flip.text
    assert (before, after) == ({"monolith"}, {"catalog"})
    assert len(pids_before) == 2, pids_before
    assert len(pids_after) == 2, pids_after
    assert _requests_total(metrics) == 61  # warm + 30 + 30, from both workers
    assert "strangler_workers_reporting 2" in metrics
