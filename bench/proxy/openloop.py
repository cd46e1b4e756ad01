"""A bounded open-loop HTTP/1.1 client: fixed request rate, latency of every request.

wrk2 is not packaged here, so this measures latency at a fixed rate (1,000 req/s) the way
wrk2 does: requests are due on a schedule, and latency counts from the due time, so a slow
answer cannot hide the queueing it causes (no coordinated omission). Connections are a
keep-alive pool; a request waits for a free connection, and that wait is part of its latency.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class OpenLoopResult:
    """Latencies (ms) of one run, sorted."""

    latencies_ms: tuple[float, ...]
    errors: int
    rate: float

    def percentile(self, p: float) -> float:
        """The p-th percentile (0..100) of the latencies."""
        if not self.latencies_ms:
            return float("nan")
        index = min(len(self.latencies_ms) - 1, int(round(p / 100 * (len(self.latencies_ms) - 1))))
        return self.latencies_ms[index]


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               request: bytes) -> None:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)


async def run_open_loop(host: str, port: int, path: str = "/", rate: float = 1000.0,
                        seconds: float = 10.0, connections: int = 32) -> OpenLoopResult:
    """Send ``rate`` requests per second for ``seconds`` and time each from its due time."""
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nX-User-Id: bench\r\n\r\n"
               ).encode()
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection(host, port))
    latencies: list[float] = []
    errors = 0
    total = int(rate * seconds)

    async def fire(due: float) -> None:
        nonlocal errors
        conn = await pool.get()
        try:
            await _one(*conn, request)
            latencies.append((time.perf_counter() - due) * 1000.0)
            pool.put_nowait(conn)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            pool.put_nowait(await asyncio.open_connection(host, port))

    start = time.perf_counter() + 0.05
    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(due)))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=seconds + 30)
    while not pool.empty():
        _, writer = pool.get_nowait()
        writer.close()
    return OpenLoopResult(tuple(sorted(latencies)), errors, rate)


def open_loop(host: str, port: int, path: str = "/", rate: float = 1000.0,
              seconds: float = 10.0) -> OpenLoopResult:
    """Blocking wrapper around :func:`run_open_loop` (on uvloop when available)."""
    try:
        import uvloop

        return uvloop.run(run_open_loop(host, port, path, rate, seconds))
    except ImportError:  # pragma: no cover
        return asyncio.run(run_open_loop(host, port, path, rate, seconds))
