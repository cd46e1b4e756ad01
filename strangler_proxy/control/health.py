"""Upstream health probes for the admin ``/readyz``: one GET of ``health_path`` each.

Readiness follows the monolith only: a failing service must not take the proxy out of a
load balancer, because the monolith path (and fallbacks) still serve. Services are reported
so an operator sees them.
"""

from __future__ import annotations

import asyncio
import contextlib

from strangler_proxy.config import MONOLITH, ProxyConfig, Upstream


async def probe(upstream: Upstream, timeout: float = 1.0) -> str:
    """``"ok"`` when ``GET health_path`` answers below 500 within ``timeout``, else why not."""
    if not upstream.health_path:
        return "not configured"
    if upstream.scheme != "http":
        return "not probed (https)"
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(upstream.hostname, upstream.port)
            writer.write(f"GET {upstream.base_path}{upstream.health_path} HTTP/1.1\r\n"
                         f"Host: {upstream.netloc}\r\nConnection: close\r\n\r\n".encode())
            line = await reader.readline()
    except TimeoutError:
        return f"timeout after {timeout}s"
    except OSError as exc:
        return f"unreachable: {exc.strerror or exc}"
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
    parts = line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        return "invalid answer"
    status = int(parts[1])
    return "ok" if status < 500 else f"status {status}"


async def readiness(config: ProxyConfig) -> tuple[bool, dict[str, str]]:
    """Probe every upstream with a ``health_path``; ready when the monolith is not failing."""
    names = list(config.upstreams)
    results = await asyncio.gather(*(probe(config.upstreams[n]) for n in names))
    report = dict(zip(names, results, strict=True))
    monolith = report.get(MONOLITH, "not configured")
    return monolith in ("ok", "not configured", "not probed (https)"), report
