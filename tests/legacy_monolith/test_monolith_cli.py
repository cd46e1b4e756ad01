"""``strangler monolith``: bad input gives one line and exit 2; a real gunicorn serves the
seeded shop and the workload drives it (bounded), with query capture on."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "STRANGLER_QUERY_LOG", "DJANGO_SETTINGS_MODULE"}}
    env.update(STRANGLER_DATA_DIR=str(data_dir), **extra)
    return env


def strangler(env: dict[str, str], *args: str,
              timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "strangler.cli", "monolith", *args],
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for needle in needles:
        assert needle in lines[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_seed_before_migrate_says_to_migrate(tmp_path: Path) -> None:
    done = strangler(_env(tmp_path), "seed", "--size", "tiny")
    _one_line_error(done, "unapplied migrations", "strangler monolith migrate")


def test_unknown_size_is_one_line(tmp_path: Path) -> None:
    done = strangler(_env(tmp_path), "seed", "--size", "huge")
    _one_line_error(done, "--size", "huge", "strangler monolith seed --help")


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    env = _env(tmp_path, DATABASE_URL="postgresql://postgres@127.0.0.1:1/nowhere")
    done = strangler(env, "migrate")
    _one_line_error(done, "cannot reach", "DATABASE_URL")


def test_workload_bad_arguments_and_unreachable_shop(tmp_path: Path) -> None:
    env = _env(tmp_path)
    _one_line_error(strangler(env, "workload", "--base-url", "http://127.0.0.1:1",
                              "--requests", "0"), "--requests")
    _one_line_error(strangler(env, "workload", "--base-url", "localhost"), "--base-url")
    _one_line_error(strangler(env, "workload", "--base-url", "http://127.0.0.1:1",
                              "--visitor-header", "X User"), "--visitor-header 'X User'")
    _one_line_error(strangler(env, "workload", "--base-url", f"http://127.0.0.1:{free_port()}",
                              "--requests", "5"), "cannot reach", "strangler monolith serve")


def test_serve_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = strangler(_env(tmp_path), "serve", "--port", str(port))
    _one_line_error(done, f"port {port}", "in use")


def test_bad_database_url_or_data_dir_is_one_line(tmp_path: Path) -> None:
    done = strangler(_env(tmp_path, DATABASE_URL="garbage"), "migrate")
    _one_line_error(done, "DATABASE_URL='garbage' is not a database URL", "postgresql://")
    (tmp_path / "file").write_text("x")  # a file where the data directory's parent should be
    done = strangler(_env(tmp_path / "file" / "below"), "migrate")
    _one_line_error(done, "cannot create the data directory", "STRANGLER_DATA_DIR")


def test_serve_refuses_a_query_log_it_cannot_write(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert strangler(env, "migrate").returncode == 0
    env["STRANGLER_QUERY_LOG"] = str(tmp_path / "no-such-dir" / "q.jsonl")
    done = strangler(env, "serve", "--port", str(free_port()))
    _one_line_error(done, "STRANGLER_QUERY_LOG=", "cannot append")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Migrate and seed a small shop on SQLite, serve it with 2 gunicorn workers."""
    data_dir = tmp_path_factory.mktemp("shop")
    log = data_dir / "queries.jsonl"
    env = _env(data_dir)
    assert strangler(env, "migrate").returncode == 0
    seeded = strangler(env, "seed", "--size", "small", "--json")
    assert seeded.returncode == 0, seeded.stderr
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "strangler.cli", "monolith", "serve", "--port", str(port),
         "--workers", "2"],
        env=_env(data_dir, STRANGLER_QUERY_LOG=str(log)), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, server)
        yield {"base": base, "env": env, "log": log, "seed": json.loads(seeded.stdout)}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=5)
        if server.stderr:
            server.stderr.close()


def _wait_ready(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the shop did not become ready in 30 s")


def test_seed_reports_counts_and_tokens(served: dict[str, Any]) -> None:
    report = served["seed"]
    assert report["counts"]["products"] == 200
    assert report["counts"]["orders"] == 300
    token = report["tokens"]["alice"]
    me = httpx.get(f"{served['base']}/api/me/", headers={"Authorization": f"Token {token}"})
    assert me.json()["username"] == "alice"


def test_gunicorn_serves_health_and_schema(served: dict[str, Any]) -> None:
    assert httpx.get(f"{served['base']}/healthz").json() == {"status": "ok"}
    schema = httpx.get(f"{served['base']}/api/schema/?format=json")
    assert schema.status_code == 200
    assert "/api/products/" in schema.json()["paths"]


def test_workload_is_bounded_deterministic_and_captured(served: dict[str, Any]) -> None:
    args = ("workload", "--base-url", served["base"], "--requests", "120", "--seed", "3",
            "--concurrency", "1", "--json")
    first = strangler(served["env"], *args)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["requests"] == 120
    assert summary["errors_5xx"] == 0
    assert {"product-list", "checkout", "order-pay", "cart-add"} <= set(summary["by_kind"])
    # Same seed on a freshly seeded shop: the same requests.
    assert strangler(served["env"], "seed", "--size", "small").returncode == 0
    second = json.loads(strangler(served["env"], *args).stdout)
    assert second["by_kind"] == summary["by_kind"]
    assert second["by_status"] == summary["by_status"]
    lines = [json.loads(line) for line in served["log"].read_text().splitlines()]
    routes = {line["route"] for line in lines}
    assert {"product-list", "checkout", "order-pay"} <= routes
    # The workload names its requests; the capture keeps the caller's X-Request-ID.
    assert all(line["request_id"].startswith("wl-0-")
               for line in lines if line["route"] == "checkout")


def test_workload_stops_at_its_duration(served: dict[str, Any]) -> None:
    start = time.monotonic()
    done = strangler(served["env"], "workload", "--base-url", served["base"], "--requests",
                     "100000", "--duration", "1.5", "--json")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - start < 20
    assert 0 < json.loads(done.stdout)["requests"] < 100000


def test_schema_command_writes_a_file(tmp_path: Path) -> None:
    out = tmp_path / "openapi.yaml"
    done = strangler(_env(tmp_path), "schema", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "/api/reports/sales/" in out.read_text()
