"""What the shadow-side tests share: a JSON shop on 127.0.0.1 and a routes-file builder.

The shop stands in for the monolith or the service (one per side, told apart by ``price``);
it answers ``{"id": path, "price": ...}`` (plus ``served_at``, a value that changes on every
answer, when ``stamp`` is set, so there is noise to learn) and remembers every request.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Seen = tuple[str, str, dict[str, str], bytes]  # method, path, headers, body


class JsonShop(BaseHTTPRequestHandler):
    """Answers JSON for any path (201 for POST); ``/hang`` or ``delay`` sleep first."""

    protocol_version = "HTTP/1.1"
    price: object = "9.50"
    delay: float = 0.0
    stamp: bool = False

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body_in = self.rfile.read(length) if length else b""
        self.server.seen.append(  # type: ignore[attr-defined]
            (self.command, self.path, dict(self.headers.items()), body_in))
        if self.path.startswith("/hang") or self.delay:
            time.sleep(self.delay or 3.0)
        answer: dict[str, object] = {"id": self.path, "price": self.price}
        if self.stamp:
            answer["served_at"] = time.time()
        body = json.dumps(answer).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_HEAD = _answer  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


class JsonServer:
    """A :class:`JsonShop` on a port from the OS, in a daemon thread; ``close`` is idempotent."""

    def __init__(self, **attrs: object) -> None:
        self.handler = type("Handler", (JsonShop,), dict(attrs))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self.handler)
        self.httpd.daemon_threads = True
        self.httpd.seen = []  # type: ignore[attr-defined]
        # a short poll interval: shutdown() waits for it, at every test's teardown
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def seen(self) -> list[Seen]:
        return self.httpd.seen  # type: ignore[attr-defined, no-any-return]

    def close(self) -> None:
        if self.thread.is_alive():  # a second shutdown() would wait forever
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(timeout=5)


@contextmanager
def monolith_and_service(monolith_price: object = "9.50", service_price: object = 9.5,
                         stamp: bool = False) -> Iterator[tuple[JsonServer, JsonServer]]:
    """Two shops that differ in the type of ``price`` (the demo's deliberate discrepancy)."""
    monolith = JsonServer(price=monolith_price, stamp=stamp)
    service = JsonServer(price=service_price, stamp=stamp)
    try:
        yield monolith, service
    finally:
        monolith.close()
        service.close()


def routes_toml(store: object, monolith_url: str = "http://127.0.0.1:9",
                service_url: str = "http://127.0.0.1:9", *,
                shadow: Mapping[str, object] | None = None,
                gate: tuple[int, float] | None = None, route: str = "", more: str = "",
                listen: bool = False, token: str = "t") -> str:
    """A routes file with one shadow route, ``products`` (``/api/products/`` -> ``catalog``).

    ``shadow`` adds ``[shadow]`` keys (plain values, see :func:`toml_value`), ``gate`` sets
    (min_compared, min_match_rate), ``route`` adds lines to the products route, ``more`` is
    appended (further routes), ``listen`` binds proxy and admin to ports from the OS.
    """
    bind = 'listen = "127.0.0.1:0"\n'
    lines = [f"[proxy]\n{bind}" if listen else "",
             f"[admin]\n{bind if listen else ''}token = \"{token}\"\n"]
    if gate is not None:
        lines.append(f"[gate]\nmin_compared = {gate[0]}\nmin_match_rate = {gate[1]}\n")
    settings = "".join(f"{k} = {toml_value(v)}\n" for k, v in (shadow or {}).items())
    lines.append(f'[shadow]\nstore = "{store}"\n{settings}')
    lines.append(f'[upstreams.monolith]\nurl = "{monolith_url}"\n'
                 f'[upstreams.catalog]\nurl = "{service_url}"\n')
    lines.append('[[routes]]\nname = "products"\nmatch = { path_prefix = "/api/products/" }\n'
                 f'mode = "shadow"\ntarget = "catalog"\n{route}\n')
    return "".join(lines) + more


def toml_value(value: object) -> str:
    """A TOML literal for a plain value.

    >>> toml_value(True), toml_value(0.5), toml_value("x"), toml_value(["a", 1])
    ('true', '0.5', '"x"', '["a", 1]')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def monolith_route(name: str, prefix: str) -> str:
    """A ``[[routes]]`` entry left on the monolith (the default mode)."""
    return f'[[routes]]\nname = "{name}"\nmatch = {{ path_prefix = "{prefix}" }}\n'


class MemoryTransport:
    """A transport in memory for driving the proxy's protocols without sockets: writes are
    kept, the write buffer is as big as ``pending`` says, ``close``/``abort`` set ``closing``."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.pending = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 5555) if name == "peername" else None

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.pending

    def set_write_buffer_limits(self, *args: Any) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True
