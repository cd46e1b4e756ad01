"""Real servers on 127.0.0.1 for the proxy tests: scripted upstreams and a proxy in a thread.

Everything runs on one background event loop (uvloop) so tests stay synchronous and every
server is closed in a ``finally``. Upstreams record the exact bytes they receive.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httptools
import uvloop

from strangler_proxy import OfferSink
from strangler_proxy.control import ProxyApp
from strangler_proxy.edge import listen_socket


class LoopThread:
    """An event loop running in a daemon thread; ``run`` executes a coroutine on it."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[Any], timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def call(self, fn: Callable[[], Any]) -> Any:
        async def wrapper() -> Any:
            return fn()
        return self.run(wrapper())

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            self.run(cancel_all(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Request:
    """A request as an upstream received it."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes  # the bytes of this connection up to the end of this request

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        return ", ".join(values) if values else None


Handler = Callable[[Request, asyncio.Transport], Awaitable[None]]


def response(status: int = 200, body: bytes = b"ok", headers: list[tuple[str, str]] | None = None,
             ) -> bytes:
    lines = [f"HTTP/1.1 {status} X"]
    hdrs = headers if headers is not None else [("Content-Length", str(len(body)))]
    lines += [f"{n}: {v}" for n, v in hdrs]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def answer_with(name: str) -> Handler:
    """A handler answering 200 with the upstream's name as the body."""
    async def handler(req: Request, transport: asyncio.Transport) -> None:
        transport.write(response(200, name.encode()))
    return handler


class _UpstreamProtocol(asyncio.Protocol):
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.parser = httptools.HttpRequestParser(self)
        self.raw = bytearray()
        self.transport: asyncio.Transport | None = None
        self.body = bytearray()
        self.headers: list[tuple[str, str]] = []
        self.url = b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.upstream.connections += 1
        self.upstream.raw_connections.append(self.raw)

    def data_received(self, data: bytes) -> None:
        if self.upstream.keep_bodies:
            self.raw += data
        self.upstream.bytes_received += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass
        except httptools.HttpParserError:
            if self.transport:
                self.transport.close()

    def on_message_begin(self) -> None:
        self.body = bytearray()
        self.headers = []
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        if self.upstream.keep_bodies:
            self.body += body
        self.upstream.body_bytes += len(body)

    def on_message_complete(self) -> None:
        req = Request(self.parser.get_method().decode(), self.url.decode("latin-1"),
                      self.headers, bytes(self.body), bytes(self.raw))
        self.upstream.requests.append(req)
        assert self.transport is not None
        asyncio.get_running_loop().create_task(self.upstream.handler(req, self.transport))


@dataclass
class Upstream:
    """A scripted HTTP upstream on 127.0.0.1 that records what it receives."""

    name: str
    handler: Handler
    requests: list[Request] = field(default_factory=list)
    raw_connections: list[bytearray] = field(default_factory=list)
    connections: int = 0
    bytes_received: int = 0
    body_bytes: int = 0
    keep_bodies: bool = True
    server: asyncio.Server | None = None
    port: int = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _UpstreamProtocol(self), "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def config_text(upstreams: dict[str, str], routes: str = "", proxy: str = "",
                extra: str = "") -> str:
    ups = "".join(f'[upstreams.{n}]\nurl = "{u}"\nconnect_timeout = 1\nread_timeout = 2\n'
                  for n, u in upstreams.items())
    return (f'# test routes file\n[proxy]\nlisten = "127.0.0.1:0"\nreload_interval = 0.05\n'
            f'{proxy}\n[admin]\nlisten = "127.0.0.1:0"\ntoken = "secret-token"\n'
            f'{extra}\n{ups}\n{routes}')


@dataclass
class Running:
    """A proxy and its upstreams, all live."""

    loop: LoopThread
    app: ProxyApp
    upstreams: dict[str, Upstream]
    config_path: Path

    @property
    def port(self) -> int:
        return int(self.app.proxy_address.rsplit(":", 1)[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.app.admin_address}"


@contextlib.contextmanager
def running_proxy(tmp_path: Path, handlers: dict[str, Handler], routes: str = "",
                  proxy: str = "", extra: str = "", upstream_urls: dict[str, str] | None = None,
                  sink: Any = None, environ: dict[str, str] | None = None,
                  ) -> Iterator[Running]:
    """Start upstreams (one per handler) and the proxy; stop everything on the way out."""
    loop = LoopThread()
    upstreams = {n: Upstream(n, h) for n, h in handlers.items()}
    app: ProxyApp | None = None
    try:
        for upstream in upstreams.values():
            loop.run(upstream.start())
        urls = {n: u.url for n, u in upstreams.items()} | (upstream_urls or {})
        path = tmp_path / "strangler.toml"
        path.write_text(config_text(urls, routes, proxy, extra))
        factory = (lambda config: sink) if sink is not None else (lambda config: _Null())
        app = ProxyApp(path, environ=environ or {}, sink_factory=factory)

        async def start() -> None:
            assert app is not None
            await app.start(listen_socket("127.0.0.1:0"), listen_socket("127.0.0.1:0"))
        loop.run(start())
        yield Running(loop, app, upstreams, path)
    finally:
        if app is not None:
            with contextlib.suppress(Exception):
                loop.run(app.stop(grace=1.0))
        for upstream in upstreams.values():
            with contextlib.suppress(Exception):
                loop.run(upstream.stop())
        loop.close()


class _Null(OfferSink):
    def offer(self, offer: Any) -> bool:
        return False


def raw_exchange(port: int, data: bytes, timeout: float = 5.0, read_until_close: bool = True,
                 ) -> bytes:
    """Send raw bytes to 127.0.0.1:port and return what comes back (until close/timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if not read_until_close and b"\r\n\r\n" in b"".join(chunks):
                    break
        return b"".join(chunks)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process_group(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM a process started with ``start_new_session``, then SIGKILL what is left;
    close the pipes the test opened to it."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
