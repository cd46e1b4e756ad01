"""Primary latency with shadow on vs off, at half the proxy's max throughput.

Two nginx processes play the monolith and the service (fixed JSON answers that differ in one
field, so every shadow copy is a mismatch that gets compared and stored with bodies). Our
proxy runs the route in ``monolith`` mode (shadow off) or ``shadow`` mode at 100% and 10%
sampling, and at 100% with the worker capped at a quarter of a core.
First wrk finds the max throughput with shadow off; then an open-loop client (latency from
each request's due time, no coordinated omission) sends half that rate to each setup in
alternating rounds, and we compare p50 and p99.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.proxy.openloop import native_client, open_loop
from bench.proxy.run import free_port, nginx_conf
from bench.proxy.run import process as running
from strangler_proxy.shadow.store import open_store

MONOLITH_BODY = '{"id": 1, "name": "Chair", "price": "9.50", "stock": 5, "tags": ["a", "b"]}'
SERVICE_BODY = '{"id": 1, "name": "Chair", "price": 9.5, "stock": 5, "tags": ["a", "b"]}'


def json_server(port: int, body: str) -> str:
    """An nginx server block answering ``body``. The monolith and the service are two nginx
    processes, as in a deployment: sharing one event loop would queue the client's requests
    behind the shadow copies, a cost no real deployment has."""
    return f"""server {{ listen 127.0.0.1:{port}; keepalive_requests 1000000;
        location / {{ default_type application/json; return 200 '{body}'; }} }}"""


def routes_text(port: int, admin: int, monolith: int, service: int, mode: str, percent: float,
                store: Path | str, worker_cpu: float = 100.0, shadow_extra: str = "") -> str:
    """The routes file of the shadow benchmarks (``shadow_extra``: more ``[shadow]`` keys)."""
    return f"""[proxy]
listen = "127.0.0.1:{port}"
access_log = "off"
reload_interval = 0
[admin]
listen = "127.0.0.1:{admin}"
token = "bench"
[shadow]
store = "{store}"
noise_percent = 5
worker_cpu_percent = {worker_cpu}
{shadow_extra}[upstreams.monolith]
url = "http://127.0.0.1:{monolith}"
[upstreams.catalog]
url = "http://127.0.0.1:{service}"
[[routes]]
name = "products"
match = {{ path_prefix = "/api/products/" }}
mode = "{mode}"
target = "catalog"
shadow = {{ percent = {percent} }}
"""


def wrk_rps(url: str, seconds: int) -> float:
    out = subprocess.run(["wrk", "-t1", "-c50", f"-d{seconds}s", url],  # noqa: S607
                         capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("Requests/sec:"))
    return float(line.split()[1])


SETUPS = (("shadow off", "monolith", 100.0, 100.0), ("shadow on, 100%", "shadow", 100.0, 100.0),
          ("shadow on, 10%", "shadow", 10.0, 100.0),
          ("shadow on, 100%, worker_cpu_percent = 25", "shadow", 100.0, 25.0))


def run(seconds: float = 8.0, rounds: int = 2, rate: float | None = None) -> dict[str, Any]:
    """Max throughput (shadow off), then p50/p99 per setup at ``rate`` (default: half max)."""
    missing = [t for t in ("nginx", "wrk") if shutil.which(t) is None]
    if missing:
        return {"skipped": f"needs {', '.join(missing)}: apt-get install -y nginx-light wrk"}
    with tempfile.TemporaryDirectory(prefix="shadow-bench-") as tmp:
        work = Path(tmp)
        mono, serv = free_port(), free_port()
        monolith_conf = nginx_conf(work, "monolith", json_server(mono, MONOLITH_BODY))
        service_conf = nginx_conf(work, "service", json_server(serv, SERVICE_BODY))
        with running(["nginx", "-c", str(monolith_conf)], mono, work / "monolith.log"), \
                running(["nginx", "-c", str(service_conf)], serv, work / "service.log"):
            max_rps = _proxy_max(work, mono, serv)
            rate = rate or max_rps / 2
            samples: dict[str, list[tuple[float, float]]] = {name: [] for name, *_ in SETUPS}
            counts: dict[str, dict[str, int]] = {}
            for _ in range(rounds):
                for name, mode, percent, cpu in SETUPS:
                    p50, p99, got = _measure(work, mono, serv, mode, percent, rate, seconds,
                                             cpu)
                    samples[name].append((p50, p99))
                    counts[name] = got
    rows = {name: {"p50_ms": statistics.median(p for p, _ in s),
                   "p99_ms": statistics.median(p for _, p in s), "shadow": counts[name]}
            for name, s in samples.items()}
    client = "C (bench/proxy/openloop.c)" if native_client() else "asyncio"
    return {"max_rps_shadow_off": max_rps, "rate": rate, "seconds": seconds, "rounds": rounds,
            "client": client, "setups": rows}


def _proxy_max(work: Path, mono: int, serv: int) -> float:
    port, admin = free_port(), free_port()
    config = work / "max.toml"
    config.write_text(routes_text(port, admin, mono, serv, "monolith", 100, work / "max.db"))
    with running([sys.executable, "-m", "strangler.cli", "proxy", "--config",
                  str(config)], port, work / "max.log"):
        wrk_rps(f"http://127.0.0.1:{port}/api/products/1/", 2)  # warm-up
        return wrk_rps(f"http://127.0.0.1:{port}/api/products/1/", 5)


def _measure(work: Path, mono: int, serv: int, mode: str, percent: float, rate: float,
             seconds: float, worker_cpu: float = 100.0) -> tuple[float, float, dict[str, int]]:
    port, admin = free_port(), free_port()
    store = work / f"{mode}-{percent:.0f}-{time.monotonic_ns()}.sqlite3"
    config = work / "run.toml"
    config.write_text(routes_text(port, admin, mono, serv, mode, percent, store, worker_cpu))
    with running([sys.executable, "-m", "strangler.cli", "proxy", "--config",
                  str(config)], port, work / "run.log"):
        open_loop("127.0.0.1", port, "/api/products/1/", rate=rate, seconds=1.0)  # warm-up
        result = open_loop("127.0.0.1", port, "/api/products/1/", rate=rate, seconds=seconds)
    counts: dict[str, int] = {}
    if store.exists():
        opened = open_store(str(store))
        try:
            counts = {name: value for (_, name), value in opened.counts().items()}
            counts["stored"] = len(opened.records())
        finally:
            opened.close()
    return result.percentile(50), result.percentile(99), counts


def markdown(result: dict[str, Any]) -> str:
    """The table for docs/benchmarks.md."""
    if "skipped" in result:
        return f"skipped: {result['skipped']}"
    off = result["setups"]["shadow off"]
    lines = [f"Max throughput with shadow off: {result['max_rps_shadow_off']:,.0f} req/s; "
             f"open loop at {result['rate']:,.0f} req/s for {result['seconds']:.0f} s, median of "
             f"{result['rounds']} alternating rounds; open-loop client: "
             f"{result.get('client', 'asyncio')}.", "",
             "| setup | p50 ms | p99 ms | p50 vs off | p99 vs off | shadow copies compared "
             "/ dropped (last round) |", "|---|---|---|---|---|---|"]
    for name, row in result["setups"].items():
        shadow = row["shadow"]
        compared = sum(v for k, v in shadow.items() if k.startswith("service_"))
        dropped = sum(v for k, v in shadow.items() if k.startswith("dropped_"))
        lines.append(f"| {name} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
                     f"{row['p50_ms'] / off['p50_ms']:.2f} | {row['p99_ms'] / off['p99_ms']:.2f}"
                     f" | {compared:,} / {dropped:,} |")
    return "\n".join(lines)
