"""Request-only copy records: what our proxy sends the comparator for a shadowed safe request.

The cheapest copy the proxy can make is of bytes it already holds: the request head it wrote
to the monolith (``Exchange.head_bytes``: request line, the client's end-to-end headers,
``X-Forwarded-*``, ``Via``, ``X-Request-ID``) and the body it teed. The proxy appends one record
to a bytearray per copy (no dict, tuple, JSON or hash per request); a batch of records goes
to the comparator, signed, in one write (:mod:`.remote`). The comparator decodes here, off the
proxy's cores, and asks the monolith for the baseline itself, as for an engine's mirror: a
safe request's answer is asked again anyway for the noise check, and the primary's answer
never has to be copied.

A record is a frame of the batch format (``sink.FRAME_HEADER``: a 4-byte big-endian length),
told from the marshalled frames beside it by its first byte, :data:`COPY_KIND` (marshal never
starts with it)::

    !I size | B kind (1) | B flags | H name length | I head length | d time |
    route name | head | body (the rest)

flags: bit 0, the body was cut (never sent: the proxy refuses cut bodies; kept for the
format). ``time`` is the proxy's wall clock when the batch's first copy was made (so within
``remote.RECORD_SECONDS`` of this one's; one clock read per batch, not per copy).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from strangler_proxy.exchange import RecordedRequest
from strangler_proxy.headers import REQUEST_DROP, client_address, connection_tokens

Networks = Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]

COPY_KIND: Final = 1
FLAG_TRUNCATED: Final = 1
# the frame's own 4-byte length first, then the fields it counts
RECORD: Final = struct.Struct("!IBBHId")
RECORD_FIXED: Final = RECORD.size - 4  # bytes of the fixed fields the length counts
_NAME_SIZE: Final = struct.Struct("!H")  # at offset 2 of a record (after kind and flags)


class BadRecord(ValueError):
    """A copy record that cannot be read (the batch it came in is refused)."""


@dataclass(frozen=True, slots=True)
class Copy:
    """A decoded copy record."""

    route: str
    request: RecordedRequest
    sent_at: float


def encode(route: bytes, head: bytes, body: bytes, sent_at: float, flags: int = 0) -> bytes:
    """One record (the proxy appends the same fields in place; this is for tests and tools)."""
    return RECORD.pack(RECORD_FIXED + len(route) + len(head) + len(body), COPY_KIND, flags,
                       len(route), len(head), sent_at) + route + head + body


def route_of(frame: bytes | bytearray | memoryview) -> str:
    """The route name of a record (``frame`` without its 4-byte length), nothing else read."""
    if len(frame) < RECORD_FIXED:
        raise BadRecord(f"a copy record of {len(frame)} bytes (at least {RECORD_FIXED})")
    (name_size,) = _NAME_SIZE.unpack_from(frame, 2)
    return bytes(frame[RECORD_FIXED:RECORD_FIXED + name_size]).decode("utf-8", "replace")


def decode(frame: bytes | memoryview, base_path: str = "",
           trusted: Networks = ()) -> Copy:
    """A record's fields (``frame`` without its 4-byte length), the request as the client sent it.

    ``base_path`` is the monolith's URL path (the proxy prefixed it to the target);
    ``trusted`` the routes file's ``proxy.trusted_proxies``, to read the client's address
    from ``X-Forwarded-For`` as the proxy did.
    """
    if len(frame) < RECORD_FIXED:
        raise BadRecord(f"a copy record of {len(frame)} bytes (at least {RECORD_FIXED})")
    kind, flags, name_size, head_size, sent_at = RECORD.unpack_from(
        b"\0\0\0\0" + bytes(frame[:RECORD_FIXED]))[1:]
    if kind != COPY_KIND:
        raise BadRecord(f"not a copy record (kind {kind})")
    end_name = RECORD_FIXED + name_size
    end_head = end_name + head_size
    if end_head > len(frame):
        raise BadRecord(f"a copy record's name and head ({name_size} + {head_size} bytes) run "
                        f"past its end ({len(frame)} bytes)")
    route = bytes(frame[RECORD_FIXED:end_name]).decode("utf-8")
    request = parse_head(bytes(frame[end_name:end_head]), bytes(frame[end_head:]),
                         bool(flags & FLAG_TRUNCATED), base_path, trusted)
    return Copy(route, request, sent_at)


def parse_head(head: bytes, body: bytes, truncated: bool, base_path: str = "",
               trusted: Networks = ()) -> RecordedRequest:
    r"""The client's request from the head the proxy sent upstream.

    The proxy's own headers go (forwarding, ``Via``, ``X-Request-ID``, framing, hop-by-hop,
    ``X-Strangler-*``); ``Host`` is the client's, which the proxy kept in ``X-Forwarded-Host``.

    >>> r = parse_head(b"GET /base/a?q=1 HTTP/1.1\r\nHost: mono:80\r\nCookie: c=1\r\n"
    ...                b"X-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Host: shop\r\n"
    ...                b"Via: 1.1 strangler\r\nX-Request-ID: r-1\r\n\r\n", b"", False, "/base")
    >>> r.method, r.path, r.query, r.headers, r.request_id, r.client
    ('GET', '/a', 'q=1', (('Host', 'shop'), ('Cookie', 'c=1')), 'r-1', '10.0.0.9')
    """
    if not head.endswith(b"\r\n\r\n"):
        raise BadRecord("a copy record's head does not end with an empty line")
    lines = head[:-4].split(b"\r\n")
    # messages name the line, never its bytes: a head may carry credentials
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        raise BadRecord("a copy record's request line is not METHOD TARGET HTTP/x.y "
                        "(both ends must run the same strangler version)")
    method, target, _ = parts
    pairs: list[tuple[bytes, bytes]] = []
    for number, line in enumerate(lines[1:], 2):
        name, colon, value = line.partition(b":")
        if not colon or not name:
            raise BadRecord(f"line {number} of a copy record's head is not NAME: VALUE")
        pairs.append((name.strip(), value.strip()))
    lowered = {name.lower(): value for name, value in pairs}
    drop = REQUEST_DROP | {b"host"} | connection_tokens(pairs)
    host = lowered.get(b"x-forwarded-host") or lowered.get(b"host") or b""
    headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in pairs
               if n.lower() not in drop]
    if host:
        headers.insert(0, ("Host", host.decode("latin-1")))
    raw = target.decode("latin-1")
    path, _, query = raw.partition("?")
    base = base_path.rstrip("/")
    if base and (path == base or path.startswith(base + "/")):
        path = path[len(base):] or "/"
    client = client_address("", lowered.get(b"x-forwarded-for"), True, trusted)
    return RecordedRequest(method.decode("ascii", "replace"), path, query, tuple(headers), body,
                           truncated, lowered.get(b"x-request-id", b"").decode("latin-1"),
                           client)


__all__ = ["COPY_KIND", "RECORD", "RECORD_FIXED", "BadRecord", "Copy", "decode", "encode",
           "parse_head", "route_of"]
