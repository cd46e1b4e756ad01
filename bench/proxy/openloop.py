"""A bounded open-loop HTTP/1.1 client: fixed request rate, latency of every request.

wrk2 is not packaged here, so this measures latency at a fixed rate the way wrk2 does:
requests are due on a schedule, and latency counts from the due time, so a slow answer
cannot hide the queueing it causes (no coordinated omission). Connections are a keep-alive
pool; a request waits for a free connection, and that wait is part of its latency.

Two implementations of the same thing: ``openloop.c`` (compiled on first use with the
machine's C compiler into ``bench/out/``; one thread, epoll) and an asyncio one below, used
when there is no compiler. The C one matters at high rates: the asyncio client needs about a
core at 15,000 req/s, which on a 2-core machine comes out of the server being measured.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).with_name("openloop.c")
OUT = Path(__file__).resolve().parents[1] / "out"


@dataclass(frozen=True)
class OpenLoopResult:
    """Latencies (ms) of one run, sorted."""

    latencies_ms: tuple[float, ...]
    errors: int
    rate: float
    client: str = "asyncio"

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


def native_client() -> Path | None:
    """The compiled C client (built once per source version), or None without a compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    binary = OUT / f"openloop-{digest}"
    if not binary.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        partial = binary.with_suffix(".tmp")
        built = subprocess.run([compiler, "-O2", "-o", str(partial), str(SOURCE)],  # noqa: S603
                               capture_output=True, text=True, timeout=120, check=False)
        if built.returncode != 0:
            print(f"openloop.c did not build, using the asyncio client: {built.stderr[:300]}")
            return None
        partial.replace(binary)
    return binary


def run_native(binary: Path, host: str, port: int, path: str, rate: float, seconds: float,
               connections: int = 32) -> OpenLoopResult:
    """Run the C client (bounded: it stops by itself at ``seconds`` + 10 s)."""
    done = subprocess.run([str(binary), host, str(port), path, str(rate), str(seconds),  # noqa: S603
                           str(connections)], capture_output=True, text=True,
                          timeout=seconds + 30, check=True)
    latencies = sorted(float(x) / 1000.0 for x in done.stdout.split())
    counts = dict(zip(done.stderr.split()[::2], done.stderr.split()[1::2], strict=False))
    return OpenLoopResult(tuple(latencies), int(counts.get("errors", 0)), rate, "C")


def open_loop(host: str, port: int, path: str = "/", rate: float = 1000.0,
              seconds: float = 10.0) -> OpenLoopResult:
    """The C client when it builds, else :func:`run_open_loop` (on uvloop when available)."""
    binary = native_client()
    if binary is not None:
        return run_native(binary, host, port, path, rate, seconds)
    try:
        import uvloop

        return uvloop.run(run_open_loop(host, port, path, rate, seconds))
    except ImportError:  # pragma: no cover
        return asyncio.run(run_open_loop(host, port, path, rate, seconds))
