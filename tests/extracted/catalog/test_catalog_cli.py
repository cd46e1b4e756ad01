"""``strangler catalog migrate`` and ``serve`` as a user runs them."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from conftest import STRANGLER, Process, base_env

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_migrates_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    server = Process([*STRANGLER, "catalog", "serve", "--port", str(port), "--workers", "1",
                      "--data-dir", str(tmp_path)], base_env(), tmp_path / "serve.log").start()
    try:
        deadline, ready = time.monotonic() + 30, None
        while time.monotonic() < deadline and ready is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
            except httpx.HTTPError:
                time.sleep(0.2)
        assert ready is not None, (tmp_path / "serve.log").read_text()
        assert ready.json() == {"status": "ready", "service": "catalog"}
        assert httpx.get(f"http://127.0.0.1:{port}/api/products/").json()["count"] == 0
        assert (tmp_path / "catalog.sqlite3").exists()
    finally:
        server.stop()
    assert server.proc is None


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([*STRANGLER, "catalog", "serve", "--port", str(port),
                               "--data-dir", str(tmp_path)], env=base_env(),
                              capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr == (f"strangler: error: port {port} on 127.0.0.1 is in use: stop what "
                           "runs there or pass --port N\n")


def test_migrate_with_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run([*STRANGLER, "catalog", "migrate", "--database-url",
                           "postgresql://nobody@127.0.0.1:1/none"], env=base_env(),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("strangler: error: cannot migrate the catalog database")
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "needle"), [
    (["--database-url", "garbage"], "CATALOG_DATABASE_URL='garbage' is not a database URL"),
    (["--data-dir", "{tmp}/file/below"], "cannot create the data directory"),
])
def test_a_bad_database_url_or_data_dir_is_one_line(tmp_path: Path, args: list[str],
                                                   needle: str) -> None:
    (tmp_path / "file").write_text("x")  # a file where a directory should be
    done = subprocess.run([*STRANGLER, "catalog", "migrate",
                           *(a.format(tmp=tmp_path) for a in args)], env=base_env(),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert needle in done.stderr
