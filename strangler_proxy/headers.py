"""Header rules of a reverse proxy (RFC 9110 §7.6, RFC 9112): pure functions over byte pairs.

Requests: hop-by-hop headers (the fixed list and every name listed in ``Connection``) are
removed before the proxy adds its own; client-sent ``X-Forwarded-*`` / ``Forwarded`` /
``X-Real-IP`` are dropped unless the peer is a trusted proxy; ``X-Forwarded-For/Proto/Host``
and ``Via`` are set; ``X-Request-ID`` is kept when sane, generated when missing; message
framing (``Content-Length`` / ``Transfer-Encoding``) is always re-derived by the forwarder,
never copied, so a smuggled second framing cannot reach the upstream.

Responses: the same hop-by-hop removal, ``Location`` pointing at the upstream rewritten to
the address the client used, and the proxy's own ``X-Strangler-Route`` / ``X-Request-ID``.
Header lists stay lists, so repeated ``Set-Cookie`` headers are never folded.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Final

RawHeaders = list[tuple[bytes, bytes]]

HOP_BY_HOP: Final = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"trailers",
    b"transfer-encoding", b"upgrade", b"proxy-authenticate", b"proxy-authorization",
})
FRAMING: Final = frozenset({b"content-length", b"transfer-encoding"})
FORWARDING: Final = frozenset({
    b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
    b"x-real-ip", b"forwarded",
})
# Headers the proxy owns: a client may not send them (a client's X-Strangler-Shadow would make
# a service roll back a real write; see shadow_marker.py).
OWNED: Final = frozenset({b"x-strangler-shadow", b"x-strangler-route",
                   b"x-strangler-shadow-rolled-back", b"x-strangler-shadow-changes"})
REQUEST_DROP: Final = HOP_BY_HOP | FRAMING | FORWARDING | OWNED | frozenset({
    b"expect", b"x-request-id", b"via"})
# A shadowed write's changes (strangler.shadow_changes) are for the shadow worker only: never
# passed on to a client, even if a service sends them outside shadow mode.
RESPONSE_DROP: Final = HOP_BY_HOP | FRAMING | frozenset({b"x-strangler-shadow-changes"})
VIA: Final = b"1.1 strangler"
NO_BODY_STATUSES: Final = frozenset({204, 304})  # answers that never have a body (and HEAD's)
# The shadow marker (ARCHITECTURE.md, contract 7): the proxy's shadow copies carry
# ``X-Strangler-Shadow: 1``; a service answers ``...-Rolled-Back: 1`` when it undid the write
# (``strangler.shadow_rollback``, the Django side).
SHADOW_HEADER = "X-Strangler-Shadow"
ROLLED_BACK_HEADER = f"{SHADOW_HEADER}-Rolled-Back"
_KEPT_WHEN_TRUSTED: Final = ((b"forwarded", b"Forwarded"), (b"x-real-ip", b"X-Real-IP"),
                             (b"x-forwarded-port", b"X-Forwarded-Port"))
_REQUEST_ID: Final = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,200}")
_HEX2: Final = [b"%02x" % i for i in range(256)]


class _RequestIds:
    """A per-process prefix (random bytes and the pid, new after a fork), then a counter in
    at least 8 hex digits; the counter's formatting is done once per 256 ids (per request,
    one concatenation)."""

    def __init__(self) -> None:
        self.n = 0
        self.prefix = b""
        self.block = b""  # prefix + the counter's digits but the last two, for n >> 8

    def reset(self) -> None:
        self.prefix = f"{os.urandom(6).hex()}{os.getpid():x}-".encode()
        self.block = self.prefix + b"%06x" % (self.n >> 8)

    def next(self) -> bytes:
        n = self.n = self.n + 1
        low = n & 255
        if low == 0:
            self.block = self.prefix + b"%06x" % (n >> 8)
        return self.block + _HEX2[low]


_IDS: Final = _RequestIds()
_IDS.reset()
os.register_at_fork(after_in_child=_IDS.reset)


def new_request_id() -> str:
    """A request id unique across processes: a random per-process prefix and a counter.

    Cheaper than ``uuid4()`` on the hot path and just as unique for correlating logs.
    """
    return new_request_id_bytes().decode()


def new_request_id_bytes() -> bytes:
    """:func:`new_request_id` as bytes, ready for the wire (what the forwarder uses)."""
    return _IDS.next()


def sane_request_id(value: bytes) -> bool:
    """True when a client's ``X-Request-ID`` may be passed on: 1-200 visible safe chars.

    >>> sane_request_id(b"abc-123"), sane_request_id(b"bad id")
    (True, False)
    """
    return _REQUEST_ID.fullmatch(value) is not None


def request_id_of(value: bytes | None) -> str:
    """The client's ``X-Request-ID`` if it is sane (visible, short), else a new one.

    >>> request_id_of(b"abc-123")
    'abc-123'
    >>> request_id_of(b"bad id\\r\\n") != "bad id"
    True
    """
    if value and _REQUEST_ID.fullmatch(value):
        return value.decode("ascii")
    return new_request_id()


@lru_cache(maxsize=256)
def connection_tokens_of(value: bytes) -> frozenset[bytes]:
    """The lower-cased names in one (joined) ``Connection`` value; cached, values repeat.

    >>> sorted(connection_tokens_of(b"Keep-Alive, X-Hop"))
    [b'keep-alive', b'x-hop']
    """
    return frozenset(t.strip().lower() for t in value.split(b",") if t.strip())


def header_map(headers: RawHeaders) -> tuple[list[bytes], dict[bytes, bytes]]:
    """Lower-cased names (aligned with ``headers``) and name -> value, repeats joined.

    >>> header_map([(b"Host", b"a"), (b"Cookie", b"x=1"), (b"cookie", b"y=2")])[1]
    {b'host': b'a', b'cookie': b'x=1; y=2'}
    """
    found = {name.lower(): value for name, value in headers}
    if len(found) == len(headers):
        return list(found), found  # no repeats (the common case): insertion order = lowers
    lowers = [name.lower() for name, _ in headers]
    joined: dict[bytes, bytes] = {}
    for (_, value), lower in zip(headers, lowers, strict=True):
        if lower in joined:
            joined[lower] += (b"; " if lower == b"cookie" else b", ") + value
        else:
            joined[lower] = value
    return lowers, joined


def request_head(start: bytes, headers: Sequence[tuple[bytes, bytes]], lowers: Sequence[bytes],
                 tokens: frozenset[bytes], drop_host: bool, tail: bytes) -> bytes:
    """The request head for an upstream, in one pass: ``start`` (request line, maybe Host),
    the client's end-to-end headers, then ``tail`` (forwarded, request id, framing, CRLF).

    Hop-by-hop, framing, forwarding, ``Expect``, ``Via`` and ``X-Request-ID`` headers of the
    client are dropped here because the tail re-adds the proxy's own.

    >>> request_head(b"GET / HTTP/1.1\\r\\n", [(b"Connection", b"X-A"), (b"X-A", b"1"),
    ...              (b"Accept", b"*/*")], [b"connection", b"x-a", b"accept"],
    ...              frozenset({b"x-a"}), False, b"\\r\\n")
    b'GET / HTTP/1.1\\r\\nAccept: */*\\r\\n\\r\\n'
    """
    drop = REQUEST_DROP | tokens if tokens else REQUEST_DROP
    if drop_host:
        drop = drop | {b"host"}
    parts = [start]
    parts += [b"%s: %s\r\n" % header for header, lower in zip(headers, lowers, strict=True)
              if lower not in drop]
    parts.append(tail)
    return b"".join(parts)


def serialize_lines(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Header lines, each ending with CRLF (no start line, no final empty line)."""
    return b"".join([b"%s: %s\r\n" % (n, v) for n, v in headers])


def connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """The lower-cased names listed in every ``Connection`` header.

    >>> sorted(connection_tokens([(b"Connection", b"keep-alive, X-Secret")]))
    [b'keep-alive', b'x-secret']
    """
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return frozenset(tokens)


def end_to_end(headers: Sequence[tuple[bytes, bytes]],
               extra_drop: frozenset[bytes] = frozenset()) -> RawHeaders:
    """The headers with hop-by-hop ones, those named in Connection and framing removed.

    >>> end_to_end([(b"Connection", b"close, X-A"), (b"X-A", b"1"), (b"X-B", b"2")])
    [(b'X-B', b'2')]
    """
    drop = HOP_BY_HOP | FRAMING | extra_drop | connection_tokens(headers)
    return [(n, v) for n, v in headers if n.lower() not in drop]


def is_trusted(address: str, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
               ) -> bool:
    """True when ``address`` lies in one of the trusted proxy networks."""
    if not networks:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_address(peer: str, forwarded_for: bytes | None, trusted: bool,
                   networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> str:
    """The client's address: the peer, or when it is a trusted proxy, the rightmost
    ``X-Forwarded-For`` entry that is not itself a trusted proxy.

    >>> import ipaddress as ip
    >>> nets = [ip.ip_network("10.0.0.0/8")]
    >>> client_address("10.0.0.1", b"1.2.3.4, 10.0.0.7", True, nets)
    '1.2.3.4'
    >>> client_address("5.6.7.8", b"1.2.3.4", False, nets)
    '5.6.7.8'
    """
    if not trusted or not forwarded_for:
        return peer
    hops = [h.strip().decode("latin-1") for h in forwarded_for.split(b",") if h.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop, networks):
            return hop
    return hops[0] if hops else peer


def forwarded_headers(headers: Sequence[tuple[bytes, bytes]], peer: str, trusted: bool,
                      host: bytes, scheme: bytes = b"http") -> RawHeaders:
    """``X-Forwarded-For/Proto/Host`` and ``Via`` to add, given what the client sent.

    A trusted peer's values are extended; an untrusted peer's are replaced (the caller drops
    the client's copies with :data:`FORWARDING`).

    >>> forwarded_headers([(b"X-Forwarded-For", b"6.6.6.6")], "1.2.3.4", False, b"shop")[0]
    (b'X-Forwarded-For', b'1.2.3.4')
    """
    lookup: dict[bytes, bytes] = {}
    via = b""
    for name, value in headers:
        lower = name.lower()
        if lower in FORWARDING:
            lookup[lower] = value if lower not in lookup else lookup[lower] + b", " + value
        elif lower == b"via":
            via = value if not via else via + b", " + value
    peer_bytes = peer.encode("latin-1")
    if trusted:
        xff = lookup.get(b"x-forwarded-for")
        out = [(b"X-Forwarded-For", xff + b", " + peer_bytes if xff else peer_bytes),
               (b"X-Forwarded-Proto", lookup.get(b"x-forwarded-proto", scheme)),
               (b"X-Forwarded-Host", lookup.get(b"x-forwarded-host", host))]
        out += [(name, lookup[lower]) for lower, name in _KEPT_WHEN_TRUSTED if lower in lookup]
    else:
        out = [(b"X-Forwarded-For", peer_bytes), (b"X-Forwarded-Proto", scheme),
               (b"X-Forwarded-Host", host)]
    out.append((b"Via", via + b", " + VIA if via else VIA))
    return out


def rewrite_location(value: bytes, upstream_origins: Sequence[bytes], client_origin: bytes,
                     ) -> bytes:
    """Point a ``Location`` that names an upstream at the address the client used.

    >>> rewrite_location(b"http://127.0.0.1:8001/a/", [b"http://127.0.0.1:8001"], b"http://shop")
    b'http://shop/a/'
    >>> rewrite_location(b"/relative/", [b"http://127.0.0.1:8001"], b"http://shop")
    b'/relative/'
    """
    for origin in upstream_origins:
        if value == origin or value.startswith((origin + b"/", origin + b"?")):
            return client_origin + value[len(origin):]
    return value


def serialize_head(start_line: bytes, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """A start line and headers as wire bytes, ending with the empty line.

    >>> serialize_head(b"GET / HTTP/1.1", [(b"Host", b"a")])
    b'GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n'
    """
    return b"".join([start_line, b"\r\n",
                     *[b"%s: %s\r\n" % (n, v) for n, v in headers], b"\r\n"])


REASONS: Final[dict[int, bytes]] = {
    100: b"Continue", 101: b"Switching Protocols", 200: b"OK", 201: b"Created",
    204: b"No Content", 301: b"Moved Permanently", 302: b"Found", 304: b"Not Modified",
    400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden", 404: b"Not Found",
    405: b"Method Not Allowed", 408: b"Request Timeout", 409: b"Conflict", 411: b"Length Required",
    417: b"Expectation Failed",
    413: b"Content Too Large", 426: b"Upgrade Required", 431: b"Request Header Fields Too Large",
    500: b"Internal Server Error", 502: b"Bad Gateway", 503: b"Service Unavailable",
    501: b"Not Implemented", 504: b"Gateway Timeout", 505: b"HTTP Version Not Supported",
}


# Names a client's Connection header may not remove (they are end-to-end, and the upstream
# needs them); framing headers are re-derived anyway.
PROTECTED_HEADERS: Final = frozenset({b"host"})


def normalize_path(path: bytes) -> bytes:
    """The path with unreserved %XX decoded, dot segments resolved and slashes merged.

    Reserved escapes (``%2F``, ``%3F``...) stay escaped: decoding them would change the
    meaning of the path for the origin server.

    >>> normalize_path(b"/svc/../x"), normalize_path(b"/%73vc//a/./b"), normalize_path(b"/a%2Fb")
    (b'/x', b'/svc/a/b', b'/a%2Fb')
    """
    if b"%" in path:
        path = _UNRESERVED_ESCAPE.sub(_unescape, path)
    out: list[bytes] = []
    segments = path.split(b"/")
    for segment in segments[1:]:
        if segment == b"..":
            if out:
                out.pop()
        elif segment not in (b".", b""):
            out.append(segment)
    trailing = segments[-1] in (b"", b".", b"..") and len(segments) > 1 and bool(out)
    return b"/" + b"/".join(out) + (b"/" if trailing else b"")


def _unescape(match: re.Match[bytes]) -> bytes:
    char = bytes([int(match.group(1), 16)])
    return char if _UNRESERVED.fullmatch(char) else match.group(0).upper()


_UNRESERVED_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")
_UNRESERVED = re.compile(rb"[A-Za-z0-9._~-]")



def error_response(status: int, message: str, extra: Sequence[tuple[bytes, bytes]] = (),
                   close: bool = False) -> bytes:
    """A small plain-text response the proxy itself sends (errors, 413, 431, ...)."""
    body = f"{status} {REASONS.get(status, b'').decode()}: {message}\n".encode()
    headers = [(b"Content-Type", b"text/plain; charset=utf-8"),
               (b"Content-Length", str(len(body)).encode()), *extra]
    if close:
        headers.append((b"Connection", b"close"))
    line = b"HTTP/1.1 %d %s" % (status, REASONS.get(status, b"Error"))
    return serialize_head(line, headers) + body


__all__ = [
    "PROTECTED_HEADERS", "normalize_path",
    "FORWARDING", "FRAMING", "HOP_BY_HOP", "REASONS", "REQUEST_DROP", "RESPONSE_DROP", "VIA",
    "client_address", "connection_tokens", "connection_tokens_of", "header_map",
    "request_head", "serialize_lines",
    "end_to_end", "error_response", "forwarded_headers", "is_trusted", "new_request_id",
    "new_request_id_bytes", "sane_request_id",
    "request_id_of", "rewrite_location", "serialize_head",
]
