"""Real nginx and HAProxy processes for the export tests, each with its own files and port.

Every engine runs in its own session, with its pid file, temp files and logs under the test's
tmp_path, on a port from the OS, and is stopped (the whole process group) on the way out.
Tests that need an engine that is not installed skip and say which package to install.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from proxy_harness import free_port, stop_process_group

from strangler_proxy.config import load_config
from strangler_proxy.export import build_plan, render_files
from strangler_proxy.export.apply import engine_binary


def need(engine: str) -> str:
    """The engine's executable, or skip the test naming the Debian package."""
    binary = engine_binary(engine)
    if binary is None:
        pytest.skip(f"{engine} is not installed (apt-get install {engine}; `make sysdeps`)")
    return binary


def wait_port(port: int, proc: subprocess.Popen[Any], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"engine exited {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise AssertionError(f"engine did not listen on {port}: {log.read_text()[-2000:]}")


def start_engine(engine: str, config_file: Path, port: int, log: Path,
                 ) -> subprocess.Popen[Any]:
    """Start nginx (foreground) or HAProxy (master-worker) on an exported config file."""
    binary = need(engine)
    if engine == "nginx":
        command = [binary, "-c", str(config_file), "-g", "daemon off; user root;"]
    elif engine == "envoy":
        command = [binary, "-c", str(config_file), "--use-dynamic-base-id", "--concurrency",
                   "1", "--log-level", "warn", "--file-flush-interval-msec", "200"]
    else:
        command = [binary, "-W", "-f", str(config_file)]
    handle = log.open("ab")
    proc = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    handle.close()
    try:
        wait_port(port, proc, log)
    except BaseException:
        stop_process_group(proc)
        raise
    return proc


@contextlib.contextmanager
def exported_engine(engine: str, config_path: Path, work: Path,
                    comparator_url: str | None = None) -> Iterator[str]:
    """Export ``config_path`` for ``engine``, run it on a free port; yield its base URL."""
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    plan = build_plan(load_config(config_path), comparator_url=comparator_url,
                      listen=f"127.0.0.1:{port}")
    names = {"nginx": "nginx.conf", "haproxy": "haproxy.cfg", "envoy": "envoy.yaml"}
    output = work / names[engine]
    for path, text in render_files(engine, plan, output, work).items():
        path.write_text(text)
    proc = start_engine(engine, output, port, work / "engine.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process_group(proc)


def side_of(response: httpx.Response) -> tuple[str, str]:
    """(route, upstream that answered) from the route header and the upstream's body."""
    route, _, target = response.headers.get("x-strangler-route", "").partition(";target=")
    # A HEAD answer has no body: the route header names the upstream then.
    return route, response.text or target


def have(engine: str) -> bool:
    return engine_binary(engine) is not None or shutil.which(engine) is not None
