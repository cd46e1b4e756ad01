"""Throughput of the exported data planes against our proxy, on one routes file, in one run.

The bench routes file of ``run.py`` (10 routes, every one a sticky canary, the route header
on) is served by: our proxy (1 worker), nginx running ``strangler export nginx`` of the same
file (1 worker, its JSON access log on, as exported), HAProxy running ``strangler export
haproxy`` (1 thread; the canary bucket in Lua) and, as the anchor, nginx as a plain reverse
proxy. wrk runs against each in alternating rounds; the report gives req/s, latency, CPU per
request and the ratios to our proxy.

    .venv/bin/python -m bench.proxy.exported [--rounds 5 --seconds 4]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench.proxy.run import (
    WrkResult,
    backend_server,
    check_tools,
    free_port,
    machine,
    measured,
    median_result,
    nginx_conf,
    nginx_proxy_server,
    process,
    routes_file,
    wrk,
)
from strangler_proxy.config import parse_config
from strangler_proxy.export import build_plan
from strangler_proxy.export.bucket_lua import BUCKET_LUA
from strangler_proxy.export.haproxy import render_haproxy
from strangler_proxy.export.nginx import render_nginx

PATH = "/api/hit/1/"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy.exported", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args(argv)
    check_tools()
    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-exported-") as tmp:
        runs = run_all(Path(tmp), args)
    report(runs)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


def run_all(work: Path, args: argparse.Namespace) -> dict[str, list[WrkResult]]:
    ports = {k: free_port() for k in ("backend", "anchor", "ours", "admin", "nginx", "haproxy")}
    config = work / "strangler.toml"
    text = routes_file(ports["ours"], ports["admin"], ports["backend"], 10)
    config.write_text(text)
    parsed = parse_config(text, str(config))
    (work / "exported-nginx").mkdir()
    nginx_file = work / "exported-nginx" / "nginx.conf"
    nginx_file.write_text(render_nginx(build_plan(parsed, listen=f"127.0.0.1:{ports['nginx']}"),
                                       work / "exported-nginx", worker_processes="1"))
    haproxy_file = work / "haproxy.cfg"
    (work / "strangler_bucket.lua").write_text(BUCKET_LUA)
    haproxy_file.write_text(render_haproxy(
        build_plan(parsed, listen=f"127.0.0.1:{ports['haproxy']}"), work,
        work / "strangler_bucket.lua").replace("global\n", "global\n    nbthread 1\n", 1))
    targets = {name: f"http://127.0.0.1:{ports[key]}{PATH}" for name, key in (
        ("nginx, plain reverse proxy", "anchor"), ("strangler proxy", "ours"),
        ("nginx, exported config", "nginx"), ("haproxy, exported config", "haproxy"))}
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        del targets["haproxy, exported config"]
    runs: dict[str, list[WrkResult]] = {name: [] for name in targets}
    with contextlib.ExitStack() as stack:
        enter = stack.enter_context
        enter(process(["nginx", "-c", str(nginx_conf(work, "backend",
                                                     backend_server(ports["backend"])))],
                      ports["backend"], work / "backend.log"))
        pids = {
            "nginx, plain reverse proxy": enter(process(["nginx", "-c", str(nginx_conf(
                work, "anchor", nginx_proxy_server(ports["anchor"], ports["backend"])))],
                ports["anchor"], work / "anchor.log")).pid,
            "strangler proxy": enter(process([sys.executable, "-m", "strangler.cli", "proxy",
                                              "--config", str(config), "--workers", "1"],
                                             ports["ours"], work / "ours.log")).pid,
            "nginx, exported config": enter(process(
                ["nginx", "-c", str(nginx_file), "-g", "daemon off;"], ports["nginx"],
                work / "exported-nginx.log")).pid,
        }
        if "haproxy, exported config" in targets:
            pids["haproxy, exported config"] = enter(process(
                [haproxy, "-W", "-f", str(haproxy_file)], ports["haproxy"],
                work / "haproxy.log")).pid
        for url in targets.values():  # warm up
            wrk(url, 1.0, args.connections)
        for round_ in range(args.rounds):
            for name, url in targets.items():
                result = measured(url, args.seconds, args.connections, pids[name])
                runs[name].append(result)
                print(f"round {round_ + 1}/{args.rounds} {name:28s} {result.rps:9.0f} req/s "
                      f"p50 {result.p50_ms:6.2f} ms p99 {result.p99_ms:6.2f} ms "
                      f"cpu {result.cpu_us_per_request:6.1f} us/req errors {result.errors}",
                      flush=True)
    return runs


def report(runs: dict[str, list[WrkResult]]) -> None:
    ours = runs["strangler proxy"]
    print("\n| data plane (1 worker) | req/s | p50 ms | p99 ms | CPU µs/req | req/s vs ours "
          "(median of rounds, min-max) | errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, results in runs.items():
        r = median_result(results)
        ratios = [a.rps / b.rps for a, b in zip(results, ours, strict=True)]
        print(f"| {name} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
              f"{r.cpu_us_per_request:.1f} | {statistics.median(ratios):.2f}× "
              f"({min(ratios):.2f}-{max(ratios):.2f}) | {r.errors} |")


if __name__ == "__main__":
    main()
