"""Primary latency with shadow off vs shadow via the standalone comparator, same run.

    .venv/bin/python -m bench.shadow.remote            # ~3 minutes: 3 alternating rounds
    .venv/bin/python -m bench.shadow.remote --quick    # ~40 s: one round, shorter runs

The machine is split in two, as two hosts would be (taskset). Core 0 is the primary's: our
proxy, the monolith (nginx answering fixed JSON) and the load client. Core 1 is the
comparator's: ``strangler shadow serve``, the service (nginx, JSON that differs from the
monolith's in one field, so every copy is a mismatch compared and stored with bodies) and a
second monolith instance that serves no client, which the comparator asks for baselines and
noise repeats (``shadow.comparator_baseline_url``, as Diffy's primary/secondary). wrk finds the
max throughput with shadow off; then an open-loop client (``bench/proxy/openloop``, latency
from each request's due time) sends half that rate to each setup in alternating rounds:

- shadow off: the route in ``monolith`` mode;
- shadow off again: the same setup a second time in each round, so the paired ratios show
  what this machine's noise alone makes of "within 5 %";
- comparator on core 1: the route in ``shadow`` mode at 100%, ``proxy_sends_to =
  "comparator"``, baselines from the instance on core 1; the proxy makes only the copies the
  comparator takes (``remote.Pace``);
- comparator capped: the same with ``shadow.comparator_max_per_second`` (CAP): it takes
  that many copies a second and leaves most of core 1 idle;
- comparator asking the clients' monolith: the same without ``comparator_baseline_url``: its
  baselines and noise repeats load the monolith on core 0;
- shadow off, core 1 busy: no copy at all, while a Python loop spins on core 1: how much
  the primary's core feels its neighbour's work on this machine (a shared L3 cache, or
  vCPUs that are one physical core's two threads), whatever that work is;
- batches to a discarding nginx on core 1: nginx answers 204 without saying what it took, so
  the proxy copies, batches and sends every request: its whole copy cost, unpaced.

The proxy's CPU time per request (``/proc``) is printed too: on a machine shared with other
work it moves far less than latency does.

Prints p50/p99 per setup (median over rounds) and the ratios to shadow off paired per round
(the median of each round's setup / shadow off, with the lowest and highest), what the
comparator compared and dropped, and the load average before and after. ``--store URL`` puts
the diff store in PostgreSQL. Results also go to ``bench/out/shadow-remote.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.proxy.openloop import native_client, open_loop
from bench.proxy.run import cpu_seconds, free_port, nginx_conf
from bench.proxy.run import process as running
from bench.shadow.latency import MONOLITH_BODY, SERVICE_BODY, json_server, wrk_rps
from bench.shadow.latency import routes_text as latency_routes
from strangler_proxy.shadow.store import open_store

OUT = Path(__file__).resolve().parents[1] / "out"
PROXY_CORE, OTHER_CORE = "0", "1"
SECRET = "bench-secret"
CAP = 500  # shadow.comparator_max_per_second of the "capped" setup
SETUPS = (("shadow off", "off"), ("shadow off again (the noise floor)", "again"),
          ("shadow off, core 1 busy (a Python spin loop)", "busy"),
          ("comparator on core 1", "own"),
          (f"comparator on core 1, capped at {CAP} copies/s", "capped"),
          ("comparator on core 1 asking the clients' monolith", "shared"),
          ("unpaced batches to a discarding nginx on core 1", "discard"))
BASELINES = ("off", "again")  # shadow off: no copy, nothing on core 1


def routes_text(port: int, admin: int, ports: Ports, mode: str, store: str, comparator: int,
                baseline: bool = True, cap: float = 0) -> str:
    """The routes file proxy and comparator share."""
    own = f'comparator_baseline_url = "http://127.0.0.1:{ports.baseline}"\n' if baseline else ""
    own += f"comparator_max_per_second = {cap}\n" if cap else ""
    return latency_routes(port, admin, ports.monolith, ports.service, mode, 100.0, store,
                          shadow_extra=(f'marker_secret = "{SECRET}"\nproxy_sends_to = '
                                        f'"comparator"\ncomparator_url = '
                                        f'"http://127.0.0.1:{comparator}"\n{own}'))


@dataclass(frozen=True)
class Ports:
    """The backends' ports: the clients' monolith, the service, the comparator's monolith."""

    monolith: int
    service: int
    baseline: int


def pinned(core: str, argv: list[str]) -> list[str]:
    """``argv`` pinned to ``core``."""
    return ["taskset", "-c", core, *argv]


def load_average() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run(seconds: float = 8.0, rounds: int = 3, store: str | None = None) -> dict[str, Any]:
    """Max throughput (shadow off), then p50/p99 per setup at half of it, alternating."""
    missing = [t for t in ("nginx", "wrk", "taskset") if shutil.which(t) is None]
    if missing or (os.cpu_count() or 1) < 2:
        return {"skipped": f"needs 2 cores and {', '.join(missing) or 'nothing else'}: "
                           "apt-get install -y nginx-light wrk util-linux"}
    before = load_average()
    with tempfile.TemporaryDirectory(prefix="shadow-remote-") as tmp:
        work = Path(tmp)
        ports = Ports(free_port(), free_port(), free_port())
        with _backends(work, ports):
            max_rps = _proxy_max(work, ports)
            rate = max_rps / 2
            samples: dict[str, list[tuple[float, float, float]]] = {n: [] for n, _ in SETUPS}
            counts: dict[str, dict[str, int]] = {}
            for round_ in range(rounds):
                for name, comparator in SETUPS:
                    location = store or str(work / f"diffs-{round_}-{comparator}.sqlite3")
                    p50, p99, cpu, got = _measure(work, ports, comparator, rate, seconds,
                                                  location)
                    samples[name].append((p50, p99, cpu))
                    counts[name] = got
    rows = {name: {"p50_ms": statistics.median(x[0] for x in s),
                   "p99_ms": statistics.median(x[1] for x in s),
                   "proxy_cpu_us": statistics.median(x[2] for x in s), "shadow": counts[name],
                   "rounds": [{"p50_ms": round(x[0], 3), "p99_ms": round(x[1], 3),
                               "proxy_cpu_us": round(x[2], 1)} for x in s]}
            for name, s in samples.items()}
    client = "C (bench/proxy/openloop.c)" if native_client() else "asyncio"
    return {"max_rps_shadow_off": max_rps, "rate": rate, "seconds": seconds, "rounds": rounds,
            "client": client, "setups": rows, "load_before": before,
            "load_after": load_average()}


@contextlib.contextmanager
def _backends(work: Path, ports: Ports) -> Iterator[None]:
    monolith_conf = nginx_conf(work, "monolith", json_server(ports.monolith, MONOLITH_BODY))
    service_conf = nginx_conf(work, "service", json_server(ports.service, SERVICE_BODY))
    baseline_conf = nginx_conf(work, "baseline", json_server(ports.baseline, MONOLITH_BODY))
    with running(pinned(PROXY_CORE, ["nginx", "-c", str(monolith_conf)]), ports.monolith,
                 work / "monolith.log"), \
            running(pinned(OTHER_CORE, ["nginx", "-c", str(service_conf)]), ports.service,
                    work / "service.log"), \
            running(pinned(OTHER_CORE, ["nginx", "-c", str(baseline_conf)]), ports.baseline,
                    work / "baseline.log"):
        yield


def _proxy(config: Path) -> list[str]:
    return pinned(PROXY_CORE, [sys.executable, "-m", "strangler.cli", "proxy", "--config",
                               str(config)])


def _proxy_max(work: Path, ports: Ports) -> float:
    port, admin = free_port(), free_port()
    config = work / "max.toml"
    config.write_text(routes_text(port, admin, ports, "monolith", str(work / "max.db"),
                                  free_port()))
    url = f"http://127.0.0.1:{port}/api/products/1/"
    with running(_proxy(config), port, work / "max.log"):
        with _on_primary_core():
            wrk_rps(url, 2)  # warm-up
            return wrk_rps(url, 5)


@contextlib.contextmanager
def _on_primary_core() -> Iterator[None]:
    """Run this process (and the clients it starts) on the primary's core for a while."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(PROXY_CORE)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _measure(work: Path, ports: Ports, comparator: str, rate: float, seconds: float,
             store: str) -> tuple[float, float, float, dict[str, int]]:
    """p50, p99, the proxy's CPU µs per request, and the store's counters for one setup."""
    port, admin, cport = free_port(), free_port(), free_port()
    config = work / f"run-{comparator}.toml"
    mode = "monolith" if comparator in (*BASELINES, "busy") else "shadow"
    config.write_text(routes_text(port, admin, ports, mode, store, cport,
                                  baseline=comparator != "shared",
                                  cap=CAP if comparator == "capped" else 0))
    started = time.time()
    far = None
    with contextlib.ExitStack() as stack:
        if comparator == "busy":  # core 1 busy with work that has nothing to do with us
            stack.enter_context(_spinning(OTHER_CORE))
        if comparator == "discard":  # the proxy's whole cost, with no comparison on core 1
            conf = nginx_conf(work, f"discard-{time.monotonic_ns()}",
                              f"server {{ listen 127.0.0.1:{cport}; keepalive_requests "
                              "1000000; client_max_body_size 0; location / { return 204; } }")
            stack.enter_context(running(pinned(OTHER_CORE, ["nginx", "-c", str(conf)]), cport,
                                        work / "discard.log"))
        elif comparator not in BASELINES:
            far = stack.enter_context(running(pinned(OTHER_CORE, [
                sys.executable, "-m", "strangler.cli", "shadow", "serve", "--config",
                str(config), "--listen", f"127.0.0.1:{cport}"]),
                cport, work / f"comparator-{comparator}.log"))
        proxy = stack.enter_context(running(_proxy(config), port, work / "run.log"))
        with _on_primary_core():
            open_loop("127.0.0.1", port, "/api/products/1/", rate=rate, seconds=1.0)  # warm-up
            cpu = cpu_seconds(proxy.pid)
            far_cpu = cpu_seconds(far.pid) if far else 0.0
            result = open_loop("127.0.0.1", port, "/api/products/1/", rate=rate,
                               seconds=seconds)
            cpu = cpu_seconds(proxy.pid) - cpu
            far_cpu = (cpu_seconds(far.pid) if far else 0.0) - far_cpu
    cpu_us = cpu / max(len(result.latencies_ms), 1) * 1e6
    counts = _counts(store, started)
    counts["comparator_cpu_ms"] = round(far_cpu * 1000)
    return result.percentile(50), result.percentile(99), cpu_us, counts


@contextlib.contextmanager
def _spinning(core: str) -> Iterator[None]:
    import subprocess  # noqa: PLC0415

    spin = subprocess.Popen(pinned(core, [sys.executable, "-c", "while True: pass"]))  # noqa: S603
    try:
        time.sleep(0.2)
        yield
    finally:
        spin.kill()
        spin.wait(5)


def _counts(store: str, since: float) -> dict[str, int]:
    if "://" not in store and not Path(store).exists():
        return {}
    opened = open_store(store)
    try:
        counts = {name: value for (_, name), value in opened.counts().items()}
        counts["stored"] = len(opened.records(since=since))
    finally:
        opened.close()
    return counts


def markdown(result: dict[str, Any]) -> str:
    """The table for docs/benchmarks.md."""
    if "skipped" in result:
        return f"skipped: {result['skipped']}"
    off = result["setups"]["shadow off"]
    lines = [f"Core 0: proxy, monolith, client; core 1: comparator, service, the comparator's "
             f"monolith instance. "
             f"Max throughput with shadow off: {result['max_rps_shadow_off']:,.0f} req/s; "
             f"open loop at {result['rate']:,.0f} req/s for {result['seconds']:.0f} s, median "
             f"of {result['rounds']} alternating rounds; client: {result['client']}; load "
             f"average {result['load_before']} before, {result['load_after']} after.", "",
             "| setup | p50 ms | p99 ms | p50 vs off, paired (range) | p99 vs off, paired "
             "(range) | proxy CPU µs/req | copies compared / dropped / not made, paced (last "
             "round) | comparator CPU ms/copy |",
             "|---|---|---|---|---|---|---|---|"]
    for name, row in result["setups"].items():
        shadow = row["shadow"]
        compared = sum(v for k, v in shadow.items() if k.startswith("service_"))
        dropped = sum(v for k, v in shadow.items() if k.startswith("dropped_"))
        paced = shadow.get("skipped_comparator_busy", 0)
        per_copy = shadow.get("comparator_cpu_ms", 0) / compared if compared else 0.0
        lines.append(f"| {name} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
                     f"{paired(row, off, 'p50_ms')} | {paired(row, off, 'p99_ms')}"
                     f" | {row['proxy_cpu_us']:.0f} | {compared:,} / {dropped:,} / {paced:,} | "
                     f"{per_copy:.2f} |")
    return "\n".join(lines)


def paired(row: dict[str, Any], off: dict[str, Any], key: str) -> str:
    """The median of the per-round ratios ``row / off`` for ``key``, with their range."""
    ratios = [mine[key] / base[key] for mine, base in zip(row["rounds"], off["rounds"],
                                                          strict=True) if base[key]]
    if not ratios:
        return "–"
    if len(ratios) == 1:
        return f"{ratios[0]:.2f}"
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.shadow.remote")
    parser.add_argument("--quick", action="store_true", help="one round of 4 s per setup")
    parser.add_argument("--store", metavar="URL", help="diff store (default: SQLite files)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    args = parser.parse_args(argv)
    result = run(seconds=4.0 if args.quick else 8.0,
                 rounds=1 if args.quick else args.rounds, store=args.store)
    print("## Primary latency: shadow off vs the standalone comparator\n")  # noqa: T201
    print(markdown(result))  # noqa: T201
    OUT.mkdir(exist_ok=True)
    (OUT / "shadow-remote.json").write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
