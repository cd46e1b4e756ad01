"""A small asyncio HTTP/1.1 client for shadow copies and replays: keep-alive pools, llhttp.

The shadow worker sends one or two requests per compared exchange, so its client's cost per
request sets how many copies a worker compares before it has to drop them. httpx's pool
checks every idle connection on every request (getpeername and a poll per connection,
encode/httpx#3215) and, without sniffio installed, retries a failed import per request:
about 1.5 ms of CPU per copy measured here (``bench/shadow``). This client keeps what the
worker needs and nothing more: one keep-alive pool per origin with a connection limit, the
request written in one call, the response parsed by llhttp (httptools) with the body kept as
the bytes that came (no content decoding: the comparator decodes), capped at ``max_body``.

Errors are exceptions the caller maps to a recorded error: :class:`ConnectError` (could not
connect), ``ConnectionResetError`` / :class:`ProtocolError` (closed or garbled mid-answer).
Timeouts are the caller's (``asyncio.timeout`` around :meth:`HttpClient.request`); a
cancelled request closes its connection rather than returning it to the pool.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httptools

from strangler_proxy.config import IDEMPOTENT_METHODS
from strangler_proxy.headers import NO_BODY_STATUSES, RawHeaders

_NO_ANSWER = "the connection closed or was reset before any answer"
_READ_SIZE = 256 * 1024


class ConnectError(OSError):
    """The origin could not be reached (refused, unresolvable, unreachable)."""


class ProtocolError(OSError):
    """The origin's answer was not valid HTTP/1.1, or ended before it was complete."""


@dataclass(slots=True)
class Response:
    """One answer: status, headers as received, the body bytes (capped), and whether cut."""

    status: int
    headers: RawHeaders
    body: bytes
    truncated: bool = False
    digest: str = ""  # when truncated: SHA-256 (hex) of the whole body, read to its end
    size: int = -1  # when truncated: the whole body's length


@dataclass(slots=True)
class _Parsed:
    """What the parser callbacks collect for one response."""

    max_body: int
    head_only: bool
    headers: RawHeaders = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    truncated: bool = False
    headers_done: bool = False
    complete: bool = False
    keep_alive: bool = False
    parser: httptools.HttpResponseParser | None = None
    hasher: Any = None  # SHA-256 of the whole body, from the moment it passes max_body

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        # read here: llhttp has reset its flags by the time the message is complete
        self.keep_alive = self.parser is not None and self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        if self.hasher is not None:  # past the cap: hashed to the end, not kept
            self.hasher.update(body)
            self.size += len(body)
            return
        room = self.max_body - self.size
        if len(body) > room:
            self.hasher = hashlib.sha256(b"".join(self.chunks))
            self.hasher.update(body)
            self.chunks.append(body[:room])
            self.size += len(body)
            self.truncated = True
            return
        self.chunks.append(body)
        self.size += len(body)

    def on_message_complete(self) -> None:
        self.complete = True


_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class HttpClient:
    """Keep-alive connection pools per origin, at most ``max_connections`` requests at once."""

    def __init__(self, max_connections: int = 20, max_idle: int | None = None) -> None:
        self._slots = asyncio.Semaphore(max_connections)
        self._max_idle = max_idle if max_idle is not None else max_connections
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._ssl: ssl.SSLContext | None = None
        self._closed = False

    async def request(self, method: str, url: str, headers: Sequence[tuple[str, str]],
                      body: bytes = b"", max_body: int = 1 << 30) -> Response:
        """Send one request and read its answer (the body capped at ``max_body`` bytes)."""
        if self._closed:
            raise RuntimeError("the client is closed")
        parts = urlsplit(url)
        scheme = parts.scheme or "http"
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r}: only http:// and https:// URLs with a host")
        origin = (scheme, parts.hostname, parts.port or (443 if scheme == "https" else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = self._head(method, target, headers, body, parts.netloc)
        async with self._slots:
            reused = self._take(origin)
            if reused is not None:
                try:
                    return await self._exchange(origin, reused, head, body, method, max_body)
                except _StaleConnection as exc:
                    # the origin closed an idle connection: nothing came back, so an idempotent
                    # request is sent again on a new one (others may have been acted on)
                    if method not in IDEMPOTENT_METHODS:
                        raise ProtocolError(_NO_ANSWER) from exc
            connection = await self._connect(origin)
            try:
                return await self._exchange(origin, connection, head, body, method, max_body)
            except _StaleConnection as exc:
                raise ProtocolError(_NO_ANSWER) from exc

    @staticmethod
    def _head(method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes,
              netloc: str) -> bytes:
        lines = [f"{method} {target} HTTP/1.1"]
        has_host = False
        for name, value in headers:
            lower = name.lower()
            if lower in ("content-length", "transfer-encoding", "connection"):
                continue
            has_host = has_host or lower == "host"
            lines.append(f"{name}: {value}")
        if not has_host:
            lines.append(f"Host: {netloc}")
        if body or method not in ("GET", "HEAD", "OPTIONS", "DELETE", "TRACE"):
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _take(self, origin: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            reader, writer = idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        return None

    async def _connect(self, origin: tuple[str, str, int]) -> _Connection:
        scheme, host, port = origin
        context = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            return await asyncio.open_connection(host, port, ssl=context, limit=_READ_SIZE)
        except OSError as exc:
            raise ConnectError(f"{host}:{port}: {exc.strerror or exc}") from exc

    async def _exchange(self, origin: tuple[str, str, int], connection: _Connection,
                        head: bytes, body: bytes, method: str, max_body: int) -> Response:
        reader, writer = connection
        parsed = _Parsed(max_body=max_body, head_only=method == "HEAD")
        parser = parsed.parser = httptools.HttpResponseParser(parsed)
        keep = False
        received = 0
        try:
            writer.write(head + body if len(body) < 65536 else head)
            if len(body) >= 65536:
                writer.write(body)
            await writer.drain()
            while True:
                data = await reader.read(_READ_SIZE)
                if not data:
                    if received == 0:
                        raise _StaleConnection
                    if parsed.headers_done and not parsed.complete and _close_delimited(parsed):
                        parsed.complete = True  # an answer delimited by closing
                        break
                    raise ProtocolError("the connection closed before the answer was complete")
                received += len(data)
                try:
                    parser.feed_data(data)
                except httptools.HttpParserUpgrade:
                    parsed.complete = True  # the connection now speaks another protocol:
                    parsed.keep_alive = False  # answer recorded, connection not reused
                except httptools.HttpParserError as exc:
                    raise ProtocolError(f"invalid HTTP answer: {exc}") from exc
                status = parser.get_status_code() if parsed.headers_done else 0
                if parsed.headers_done and 100 <= status < 200 and status != 101:
                    parsed = _Parsed(max_body=max_body, head_only=parsed.head_only)
                    parser = parsed.parser = httptools.HttpResponseParser(parsed)  # interim
                    continue
                if parsed.headers_done and (parsed.head_only or status in NO_BODY_STATUSES):
                    parsed.complete = True
                if parsed.complete:
                    break
                # past max_body the rest is still read (and hashed), so that a body that
                # differs only beyond the cap is not a match (the timeout bounds the wait)
            keep = parsed.complete and parsed.keep_alive
            hasher = parsed.hasher
            return Response(parser.get_status_code(), parsed.headers, b"".join(parsed.chunks),
                            parsed.truncated, hasher.hexdigest() if hasher else "",
                            parsed.size if hasher else -1)
        except ConnectionResetError as exc:
            if received == 0:
                raise _StaleConnection from exc
            raise
        finally:
            if keep and not self._closed and len(self._idle.get(origin, ())) < self._max_idle:
                self._idle.setdefault(origin, []).append(connection)
            else:
                writer.close()

    async def aclose(self) -> None:
        """Close every idle connection; requests in flight close theirs when they end."""
        self._closed = True
        for idle in self._idle.values():
            for _, writer in idle:
                writer.close()
        self._idle.clear()

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _StaleConnection(Exception):  # noqa: N818 - internal signal, not an error to report
    """Nothing came back on this connection: a reused one the origin had closed."""


def _close_delimited(parsed: _Parsed) -> bool:
    """Whether the answer has neither a length nor chunked framing (it ends at close)."""
    names = {name.lower() for name, _ in parsed.headers}
    return b"content-length" not in names and b"transfer-encoding" not in names
