"""Requests per second of the monolith's main read endpoints (the proxy's baseline).

Seeds ``small`` into a temp dir (SQLite), serves it with gunicorn (1 and 2 workers) and
loads ``/api/products/``, ``/api/products/{id}/`` and ``/api/categories/`` with wrk (when
installed: ``apt-get install -y wrk``) or a bounded httpx/asyncio loop. Prints req/s,
p50 and p99 per endpoint, and the seed time.

    python -m bench.monolith_rps [--duration 5] [--connections 16] [--workers 1 2] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

PATHS = ("/api/products/", "/api/products/7/", "/api/categories/")


@dataclass(frozen=True)
class Measurement:
    workers: int
    path: str
    tool: str
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "STRANGLER_QUERY_LOG"}}
    env["STRANGLER_DATA_DIR"] = str(data_dir)
    return env


def _strangler(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "strangler.cli", "monolith", *args],
                          env=env, capture_output=True, text=True, timeout=600, check=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(env: dict[str, str], workers: int) -> Iterator[str]:
    """A gunicorn-served shop; yields its base URL and stops it afterwards."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "strangler.cli", "monolith", "serve", "--port", str(port),
         "--workers", str(workers)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the monolith did not start")
            time.sleep(0.2)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, duration: float, connections: int) -> tuple[int, float, float, float, int]:
    """requests, req/s, p50, p99, errors from one wrk run."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", url],
        capture_output=True, text=True, timeout=duration + 30, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    pct = dict(re.findall(r"\s+(50|99)%\s+([\d.]+(?:us|ms|s))", out))
    p50, p99 = (_ms(*re.match(r"([\d.]+)(us|ms|s)", pct[k]).groups())  # type: ignore[union-attr]
                for k in ("50", "99"))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return total, rps, p50, p99, int(errors.group(1)) if errors else 0


async def _httpx_loop(url: str, duration: float,
                      connections: int) -> tuple[int, float, float, float, int]:
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + duration
    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        async def worker() -> None:
            nonlocal errors
            while time.monotonic() < deadline:
                start = time.perf_counter()
                response = await client.get(url)
                latencies.append((time.perf_counter() - start) * 1000)
                errors += response.status_code != 200
        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.monotonic() - start
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return len(latencies), len(latencies) / elapsed, cuts[49], cuts[98], errors


def measure(base: str, workers: int, duration: float, connections: int) -> list[Measurement]:
    tool = "wrk" if shutil.which("wrk") else "httpx"
    rows = []
    for path in PATHS:
        httpx.get(base + path, timeout=10)  # warm up the workers' caches
        if tool == "wrk":
            result = run_wrk(base + path, duration, connections)
        else:
            result = asyncio.run(_httpx_loop(base + path, duration, connections))
        total, rps, p50, p99, errors = result
        rows.append(Measurement(workers, path, tool, total, round(rps, 1), round(p50, 2),
                                round(p99, 2), errors))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="monolith-bench-") as tmp:
        env = _env(Path(tmp))
        _strangler(env, "migrate")
        seeded = json.loads(_strangler(env, "seed", "--size", "small", "--json").stdout)
        rows: list[Measurement] = []
        for workers in args.workers:
            with serving(env, workers) as base:
                rows += measure(base, workers, args.duration, args.connections)
    if args.json:
        print(json.dumps({"seed_seconds": seeded["seconds"],
                          "results": [asdict(r) for r in rows]}, indent=2))
        return 0
    print(f"seed small: {seeded['seconds']} s  ({seeded['counts']})")
    print(f"{'workers':>7} {'path':<22} {'tool':<5} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'non-2xx':>7}")
    for r in rows:
        print(f"{r.workers:>7} {r.path:<22} {r.tool:<5} {r.rps:>8} {r.p50_ms:>8} "
              f"{r.p99_ms:>8} {r.errors:>7}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
