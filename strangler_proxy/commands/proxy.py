"""``strangler proxy``: run the proxy, in one process or ``--workers N`` (SO_REUSEPORT)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import click

from strangler_proxy import native
from strangler_proxy.commands.options import config_option
from strangler_proxy.config import load_config
from strangler_proxy.control import ProxyApp, WorkerGroup
from strangler_proxy.edge import describe, listen_socket
from strangler_proxy.errors import StartupError


def _event_loop_runner() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio still works
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def serve(config_path: Path, proxy_sock: socket.socket | None,
                admin_sock: socket.socket | None, admin: bool, announce: bool,
                group: WorkerGroup | None = None) -> None:
    """Run one proxy process until SIGTERM/SIGINT, then drain and stop."""
    app = ProxyApp(config_path, admin=admin, group=group)
    await app.start(proxy_sock, admin_sock, reuse_port=proxy_sock is None and not admin)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if announce:
        config = app.config
        click.echo(f"strangler proxy: listening on http://{app.proxy_address} "
                   f"(admin http://{app.admin_address}), {len(config.routes)} routes, "
                   f"route table version {app.reloader.status.version}, pid {os.getpid()}")
        for warning in config.warnings:
            click.echo(f"warning: {warning}", err=True)
        if native.mode == "compiled" or os.environ.get(native.PURE_ENV):
            click.echo(f"strangler proxy: {native.describe()}")
        else:
            click.echo(f"warning: {native.describe()}; about 40 % more CPU per request",
                       err=True)
        sys.stdout.flush()
    await stop.wait()
    await app.stop()


def run_one(config_path: Path, proxy_sock: socket.socket | None = None,
            admin_sock: socket.socket | None = None, admin: bool = True,
            announce: bool = True, group: WorkerGroup | None = None) -> None:
    """Run one proxy process on uvloop."""
    _event_loop_runner()
    asyncio.run(serve(config_path, proxy_sock, admin_sock, admin, announce, group))


def supervise(config_path: Path, workers: int) -> None:
    """Fork ``workers`` processes, each with its own SO_REUSEPORT socket on one port.

    Worker 0 also serves the admin API and sums every worker's counters for ``/metrics``;
    every worker reloads the file on its own (polling, and SIGHUP, which the supervisor
    forwards to all of them; an admin flip sends one). A worker that dies is restarted.
    """
    config = load_config(config_path)
    first = listen_socket(config.proxy.listen, reuse_port=True)
    address = describe(first)
    admin_sock = listen_socket(config.admin.listen)
    pids: dict[int, int] = {}
    shared = Path(tempfile.mkdtemp(prefix="strangler-workers-"))
    supervisor = os.getpid()

    def spawn(index: int) -> None:
        sock = first if index == 0 and first.fileno() >= 0 else \
            listen_socket(address, reuse_port=True)
        pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                run_one(config_path, sock, admin_sock if index == 0 else None,
                        admin=index == 0, announce=index == 0,
                        group=WorkerGroup(index, workers, shared, supervisor))
            except BaseException:  # noqa: BLE001 - report and leave the child
                import traceback

                traceback.print_exc()
                code = 1
            os._exit(code)
        pids[pid] = index
        if sock is not first:
            sock.close()

    for index in range(workers):
        spawn(index)
    click.echo(f"strangler proxy: {workers} workers on http://{address} (SO_REUSEPORT)")
    sys.stdout.flush()
    try:
        _wait_children(pids, spawn)
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def _wait_children(pids: dict[int, int], spawn: object) -> None:
    stopping = False

    def forward(sig: int, _frame: object) -> None:
        nonlocal stopping
        if sig in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for pid in list(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    while pids:
        try:
            pid, _status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        index = pids.pop(pid, None)
        if index is not None and not stopping:
            time.sleep(0.5)
            spawn(index)  # type: ignore[operator]


@click.command()
@config_option
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Worker processes sharing the port (default: [proxy].workers).")
def proxy(config_path: Path, workers: int | None) -> None:
    """Run the strangler proxy in front of the monolith.

    \b
    Routes, modes and upstreams come from the routes file (docs/config.md). The file is
    watched: edit it, or run `strangler routes set NAME --mode MODE`, and the running
    proxy switches its route table atomically (a bad file is refused, the last good table
    keeps serving). SIGHUP and POST /reload on the admin listener reload too.
    """
    config = load_config(config_path)
    if not config.admin.resolve_token(os.environ):
        raise StartupError(f"{config_path}: no admin token; set [admin].token or the "
                           f"environment variable named by [admin].token_env "
                           f"({config.admin.token_env or 'unset'})")
    count = workers or config.proxy.workers
    if count == 1:
        run_one(config_path)
    else:
        supervise(config_path, count)


__all__ = ["proxy", "run_one", "serve", "supervise"]
