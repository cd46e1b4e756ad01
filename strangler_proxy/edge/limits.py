"""Limits for slow and hostile clients, and what the edge refuses outright.

:func:`check_client` is run by the watchdog (``server.py``) every half second over all client
connections: header, body-rate, idle and send timeouts, like nginx's
``client_header_timeout``, ``client_body_timeout``, ``keepalive_timeout`` and
``send_timeout``. The rest are the refusal rules the client side applies per request head
(see ``docs/proxy.md``, HTTP correctness).
"""

from __future__ import annotations

import re
from typing import Final

from strangler_proxy.edge.forward import Client


def version_refusal(version: str, hmap: dict[bytes, bytes]) -> tuple[int, str] | None:
    """Why a request that is not HTTP/1.1 is refused (status, message), or None for 1.0.

    HTTP/0.9 has no headers and no framing to re-derive; other versions are unknown; and
    Transfer-Encoding in HTTP/1.0 is faulty framing (RFC 9112 §6.1; nginx: 400).

    >>> version_refusal("1.0", {}), version_refusal("1.0", {b"transfer-encoding": b"x"})[0]
    (None, 400)
    >>> version_refusal("2.0", {})[0], version_refusal("0.9", {})[0]
    (505, 400)
    """
    if version != "1.0":
        return (505 if version[:1] in "23456789" else 400,
                f"HTTP/{version} is not supported; use HTTP/1.1")
    if b"transfer-encoding" in hmap:
        return 400, "Transfer-Encoding is not allowed in an HTTP/1.0 request"
    return None


# A Host value: reg-name / IP literal and port (RFC 3986 §3.2.2), non-empty; what nginx
# accepts too. No whitespace, "/", "\", "?" or "#": those would make it a different URL.
HOST: Final = re.compile(rb"[A-Za-z0-9._~!$&'()*+,;=%:@\[\]-]+")
# CONNECT tunnels and TRACE reflects requests (cookies included); nginx refuses both (405).
REFUSED_METHODS: Final = frozenset({b"CONNECT", b"TRACE"})


def check_client(conn: Client, now: float) -> None:
    """Close a connection that is too slow to send its head or body, to read its answer, or
    idle too long.

    Like nginx's client_header_timeout, client_body_timeout, keepalive_timeout and
    send_timeout (counted from the last time it took any of what is waiting for it), with a
    minimum average rate for bodies rather than a per-read timeout, so that a client sending
    one byte every few seconds cannot hold a connection (and, unbuffered, an upstream one).
    """
    proxy = conn.state.config.proxy
    if conn.write_paused and proxy.send_timeout and (conn.tunnel is None or
                                                     conn.out_spool is not None):
        unsent = conn.unsent()
        if unsent < conn.unsent_seen:
            conn.write_paused_since = now  # it took some since the last look
        conn.unsent_seen = unsent
        if now - conn.write_paused_since > proxy.send_timeout:
            # it has accepted none of its answer for send_timeout: a stuck reader, or gone
            conn.state.metrics.client_timeout("send")
            conn.abort()
            return
    if conn.closing or conn.tunnel is not None or conn.rejected:
        return
    if conn.in_head:
        if now - conn.head_since > proxy.client_header_timeout:
            conn.state.metrics.client_timeout("header")
            conn.reject(408, "the request head did not arrive within client_header_timeout")
        return
    current = conn.current
    if current is not None:
        rate = proxy.client_body_min_rate
        if rate and now - conn.body_since > proxy.client_header_timeout + \
                current.body_bytes / rate:
            conn.state.metrics.client_timeout("body")
            conn.reject(408, f"the request body arrived slower than client_body_min_rate "
                        f"({rate} bytes/s)")
        return
    if not conn.queue and conn.out_spool is None:  # (a spooled answer still going: not idle)
        limit = proxy.keepalive_timeout if conn.served else proxy.client_header_timeout
        if now - conn.idle_since > limit:
            conn.state.metrics.client_timeout("idle")
            conn.close()


__all__ = ["HOST", "REFUSED_METHODS", "check_client", "version_refusal"]
