"""`strangler routes set` drives an exported nginx / HAProxy: regenerate, check, reload
gracefully, under load; a config the engine refuses never replaces the running one."""

from __future__ import annotations

import http.client
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from engine_harness import need, start_engine
from proxy_harness import LoopThread, Upstream, answer_with, free_port, stop_process_group

from strangler_proxy.config import load_config
from strangler_proxy.control.routes_edit import apply_route_change
from strangler_proxy.export.apply import stage_export
from strangler_proxy.export.plan import ExportError

FLIPS = 100


def allow(*_: Any) -> SimpleNamespace:
    return SimpleNamespace(allowed=True, reason="test gate")


def routes_file(tmp_path: Path, engine: str, port: int, urls: dict[str, str]) -> Path:
    config = tmp_path / "strangler.toml"
    output = tmp_path / engine / ("nginx.conf" if engine == "nginx" else "haproxy.cfg")
    output.parent.mkdir()
    config.write_text(f"""# flips drive the exported {engine}
[admin]
token = "t"

[export]
engine = "{engine}"
output = "{output}"
listen = "127.0.0.1:{port}"

[upstreams.monolith]
url = "{urls['monolith']}"

[upstreams.catalog]
url = "{urls['catalog']}"

[upstreams.ghost]
url = "http://ghost.invalid:1"  # a service whose DNS name does not exist yet

[[routes]]
name = "catalog"
match = {{ path_prefix = "/api/products/" }}
mode = "monolith"
target = "catalog"

[[routes]]
name = "ghost"
match = {{ path_prefix = "/api/ghost/" }}
mode = "monolith"
target = "ghost"
""")
    return config


class Load:
    """Keep-alive clients sending requests back to back (paced) until stopped.

    A graceful reload retires the old workers, which close their idle keep-alive connections;
    a GET sent on such a connection at that moment is retried once on a new connection, as
    browsers and HTTP libraries do (RFC 9112 section 9.3.1). Those retries are counted; a
    request that still gets no 200 from a known side is a failure. Keep-alive also keeps the
    test from leaving tens of thousands of sockets in TIME_WAIT for the rest of the suite.
    """

    def __init__(self, port: int, path: str, threads: int = 3) -> None:
        self.port, self.path = port, path
        self.sides: Counter[str] = Counter()
        self.failures: list[str] = []
        self.retries = 0
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def fetch(self, connection: http.client.HTTPConnection) -> tuple[int, str]:
        connection.request("GET", self.path)
        reply = connection.getresponse()
        return reply.status, reply.read().decode()

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stopped.is_set():
            try:
                try:
                    status, body = self.fetch(connection)
                except (http.client.RemoteDisconnected, ConnectionResetError,
                        BrokenPipeError):
                    self.retries += 1
                    connection.close()
                    status, body = self.fetch(connection)
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
                connection.close()
                continue
            if status != 200 or body not in ("monolith", "catalog"):
                self.failures.append(f"{status} {body[:80]}")
            self.sides[body] += 1
            time.sleep(0.001)
        connection.close()

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(15)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["nginx", "haproxy"])
def test_flips_under_load_reload_the_engine_without_a_failed_request(
        tmp_path: Path, engine: str) -> None:
    need(engine)
    loop = LoopThread()
    upstreams = {n: Upstream(n, answer_with(n)) for n in ("monolith", "catalog")}
    proc = None
    try:
        for upstream in upstreams.values():
            loop.run(upstream.start())
            upstream.keep_bodies = False
        port = free_port()
        config = routes_file(tmp_path, engine, port, {n: u.url for n, u in upstreams.items()})
        staged = stage_export(load_config(config))
        assert staged is not None
        staged.install()
        proc = start_engine(engine, staged.output, port, tmp_path / engine / "engine.log")
        # when the route flips 100 times under load
        started = time.monotonic()
        with Load(port, "/api/products/1/") as load:
            for flip in range(FLIPS):
                mode = "service" if flip % 2 == 0 else "monolith"
                change = apply_route_change(config, "catalog", mode, None, gate=allow)
                assert "reloaded" in change.engine, change.engine
                time.sleep(0.02)
            time.sleep(0.5)
        seconds = time.monotonic() - started
        # then no request failed and both sides answered
        assert load.failures == [], load.failures[:5]
        assert load.sides["monolith"] > 0, load.sides
        assert load.sides["catalog"] > 0, load.sides
        print(f"{engine}: {FLIPS} flips in {seconds:.1f}s, {sum(load.sides.values())} requests "
              f"({dict(load.sides)}), 0 failed, {load.retries} retried on a closed idle "
              "connection")
        # and a config the engine refuses changes neither the routes file nor the engine
        before = config.read_text()
        live = staged.output.read_text()
        with pytest.raises(ExportError, match=f"{engine} refused the generated config"):
            apply_route_change(config, "ghost", "service", None, gate=allow)
        assert config.read_text() == before
        assert staged.output.read_text() == live
        assert not list(staged.output.parent.glob(f".{staged.output.name}.*"))
        # the last flip (monolith) is what serves once the last reload is through
        assert httpx.get(f"http://127.0.0.1:{port}/api/products/1/", timeout=5,
                         headers={"Connection": "close"}).text == "monolith"
    finally:
        if proc is not None:
            stop_process_group(proc)
        for upstream in upstreams.values():
            loop.run(upstream.stop())
        loop.close()


def test_routes_set_reports_what_the_exported_engine_did_and_refusals_are_one_line(
        tmp_path: Path) -> None:
    need("nginx")
    config = routes_file(tmp_path, "nginx", free_port(),
                         {"monolith": "http://127.0.0.1:1", "catalog": "http://127.0.0.1:2"})

    def routes_set(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "strangler.cli", "routes", "set", *args,
                               "--force", "--config", str(config)], capture_output=True,
                              text=True, timeout=60, check=False)

    done = routes_set("catalog", "--mode", "service")
    assert done.returncode == 0, done.stderr
    output = tmp_path / "nginx" / "nginx.conf"
    assert f"exported engine: wrote {output}; no running nginx found to reload" in done.stdout
    assert '"catalog service" strangler_catalog;' in output.read_text()
    before = config.read_text()
    refused = routes_set("ghost", "--mode", "service")
    assert refused.returncode == 2
    assert refused.stderr.startswith("strangler: error: nginx refused the generated config: ")
    assert "ghost.invalid" in refused.stderr
    assert refused.stderr.count("\n") == 1
    assert config.read_text() == before
