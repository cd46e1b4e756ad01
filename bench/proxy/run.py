"""Benchmark the strangler proxy side by side with nginx and mitmproxy, against one backend.

Starts (all on 127.0.0.1, one worker each): a fast backend (nginx answering a fixed body),
nginx as a reverse proxy, mitmproxy in reverse mode, and our proxy with every feature on
(route table, canary hashing, forwarded headers, request ids, route header, metrics); runs
wrk against each, in alternating rounds so background load hits them alike; prints req/s,
p50, p99 and the ratios vs nginx. Then: ours with a 50-route table vs 1 route, ours with
2 workers, and the latency the proxy adds at a fixed 1,000 req/s (open loop). Optionally
(``--monolith URL``) the overhead in front of a running demo monolith.

    .venv/bin/python -m bench.proxy            # ~3 minutes
    .venv/bin/python -m bench.proxy --quick    # ~1 minute, fewer/shorter rounds
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
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
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.proxy.openloop import open_loop

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench" / "out"
BODY = "hello from the backend\n"


@dataclass
class WrkResult:
    """One wrk run."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0
    cpu_us_per_request: float = float("nan")  # CPU time of the proxy's processes per request


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@contextlib.contextmanager
def process(argv: list[str], port: int, log: Path, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,  # noqa: S603
                                start_new_session=True, env={**os.environ, **(env or {})},
                                cwd=cwd)
    try:
        wait_port(port)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def nginx_conf(work: Path, name: str, server: str) -> Path:
    base = work / name
    base.mkdir()
    conf = base / "nginx.conf"
    temps = "\n".join(f"{k}_temp_path {base}/{k};" for k in
                      ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf.write_text(f"""worker_processes 1;
daemon off;
pid {base}/nginx.pid;
error_log {base}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    {temps}
    {server}
}}
""")
    return conf


def backend_server(port: int) -> str:
    return f"""server {{
        listen 127.0.0.1:{port} reuseport;
        keepalive_requests 1000000;
        location / {{ default_type text/plain; return 200 "{BODY.strip()}\\n"; }}
    }}"""


def nginx_proxy_server(port: int, backend: int) -> str:
    return f"""upstream backend {{ server 127.0.0.1:{backend}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        keepalive_requests 1000000;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}"""


def routes_file(port: int, admin: int, backend: int, routes: int) -> str:
    lines = [f"""# bench routes file: every feature on
[proxy]
listen = "127.0.0.1:{port}"
route_header = true
access_log = "off"
reload_interval = 1.0

[admin]
listen = "127.0.0.1:{admin}"
token = "bench"

[upstreams.monolith]
url = "http://127.0.0.1:{backend}"
max_connections = 256

[upstreams.service]
url = "http://127.0.0.1:{backend}"
max_connections = 256
"""]
    contexts = ["products", "categories", "brands", "orders", "carts", "customers", "reviews",
                "payments", "shipments", "invoices"]
    for i in range(routes - 1):
        context = contexts[i % len(contexts)]
        if i % 3 == 0:
            match = f'{{ path_template = "/api/v{i}/{context}/{{id}}/", methods = ["GET"] }}'
        elif i % 3 == 1:
            match = f'{{ path_prefix = "/api/v{i}/{context}/" }}'
        else:
            match = f'{{ path = "/api/v{i}/{context}/summary/" }}'
        lines.append(f'[[routes]]\nname = "r{i}"\nmatch = {match}\nmode = "canary"\n'
                     f'percent = 50\ntarget = "service"\nsticky = "header:X-User-Id"\n')
    lines.append('[[routes]]\nname = "hit"\nmatch = { path_template = "/api/hit/{id}/" }\n'
                 'mode = "canary"\npercent = 50\ntarget = "service"\n'
                 'sticky = "header:X-User-Id"\n')
    return "\n".join(lines)


_LAT = re.compile(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def parse_wrk(output: str) -> WrkResult:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    lat = {}
    for pct, value, unit in _LAT.findall(output):
        lat[pct] = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", output)
    count = int(errors.group(1)) if errors else 0
    if socket_errors:
        count += sum(int(x) for x in socket_errors.groups())
    total = re.search(r"(\d+) requests in", output)
    return WrkResult(rps, lat.get("50", float("nan")), lat.get("99", float("nan")), count,
                     int(total.group(1)) if total else 0)


def wrk(url: str, seconds: float, connections: int = 50, threads: int = 1) -> WrkResult:
    duration = f"-d{max(1, round(seconds))}s"
    done = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", duration,  # noqa: S607
                           "--latency", "-H", "X-User-Id: bench-user", url],
                          capture_output=True, text=True, timeout=seconds + 60, check=True)
    return parse_wrk(done.stdout)


def median_result(results: list[WrkResult]) -> WrkResult:
    return WrkResult(statistics.median(r.rps for r in results),
                     statistics.median(r.p50_ms for r in results),
                     statistics.median(r.p99_ms for r in results),
                     sum(r.errors for r in results), sum(r.requests for r in results),
                     statistics.median(r.cpu_us_per_request for r in results))


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its live descendants (nginx workers, ours)."""
    total = 0.0
    todo = [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _TICKS
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                todo += [int(c) for c in children]
    return total


def measured(url: str, seconds: float, connections: int, pid: int | None,
             threads: int = 1) -> WrkResult:
    """wrk, plus the CPU time the proxy process tree spent per request meanwhile.

    On a machine shared with other work, req/s moves with everyone else's load; CPU time per
    request moves much less, so it is the fairer efficiency comparison.
    """
    before = cpu_seconds(pid) if pid else 0.0
    result = wrk(url, seconds, connections, threads)
    if pid and result.requests:
        result.cpu_us_per_request = (cpu_seconds(pid) - before) / result.requests * 1e6
    return result


def check_tools() -> None:
    missing = [t for t in ("nginx", "wrk") if shutil.which(t) is None]
    if missing:
        sys.exit(f"bench.proxy: missing {', '.join(missing)}; install with "
                 "`apt-get install -y nginx-light wrk`")


def machine() -> str:
    cpus = os.cpu_count()
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()[0]
    return (f"{cpus} CPUs ({model}), Linux {platform.release()}, Python "
            f"{platform.python_version()}, load average at start {load:.2f}")


def main(argv: list[str] | None = None) -> None:  # noqa: PLR0915 - a script, read top-down
    parser = argparse.ArgumentParser(prog="python -m bench.proxy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="wrk duration per run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 s, short latency")
    parser.add_argument("--no-mitmproxy", action="store_true")
    parser.add_argument("--monolith", default="", help="URL of a running demo monolith")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a directory holding another strangler_proxy/ (e.g. a copy of "
                             "the previous commit): run it too, in the same rounds, for "
                             "before/after numbers on a shared machine")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds = 3.0, 2
    check_tools()
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp:
        work = Path(tmp)
        ports = {k: free_port() for k in ("backend", "nginx", "mitm", "bare", "ours", "ours_admin",
                                          "ours50", "ours50_admin", "ours2", "ours2_admin",
                                          "base", "base_admin")}
        results = run_all(work, ports, args)
    report(results, args)


def run_all(work: Path, ports: dict[str, int], args: argparse.Namespace) -> dict[str, object]:
    py = sys.executable
    strangler = [py, "-m", "strangler.cli", "proxy", "--config"]
    configs = {}
    for name, routes in (("ours", 1), ("ours50", 50), ("ours2", 1), ("base", 1)):
        path = work / f"{name}.toml"
        path.write_text(routes_file(ports[name], ports[f"{name}_admin"], ports["backend"],
                                    routes))
        configs[name] = path
    targets = {
        "backend (direct)": f"http://127.0.0.1:{ports['backend']}/api/hit/1/",
        "nginx": f"http://127.0.0.1:{ports['nginx']}/api/hit/1/",
        "bare Python forwarder": f"http://127.0.0.1:{ports['bare']}/api/hit/1/",
        "strangler": f"http://127.0.0.1:{ports['ours']}/api/hit/1/",
        "strangler, 50 routes": f"http://127.0.0.1:{ports['ours50']}/api/hit/1/",
    }
    if args.baseline:
        targets["strangler, baseline tree"] = f"http://127.0.0.1:{ports['base']}/api/hit/1/"
    if not args.no_mitmproxy:
        targets["mitmproxy"] = f"http://127.0.0.1:{ports['mitm']}/api/hit/1/"
    runs: dict[str, list[WrkResult]] = {name: [] for name in targets}
    latency: dict[str, dict[str, float]] = {}
    scaling: dict[str, WrkResult] = {}
    scaling_runs: dict[str, list[WrkResult]] = {}
    with contextlib.ExitStack() as stack:
        enter = stack.enter_context
        pids: dict[str, int | None] = {"backend (direct)": None}
        enter(process(["nginx", "-c", str(nginx_conf(work, "backend",
                                                     backend_server(ports["backend"])))],
                      ports["backend"], work / "backend.log"))
        pids["nginx"] = enter(process(["nginx", "-c", str(nginx_conf(work, "proxy",
                                      nginx_proxy_server(ports["nginx"], ports["backend"])))],
                                      ports["nginx"], work / "nginx.log")).pid
        if not args.no_mitmproxy:
            mitm = Path(sys.executable).parent / "mitmdump"
            pids["mitmproxy"] = enter(process(
                [str(mitm), "--mode", f"reverse:http://127.0.0.1:{ports['backend']}",
                 "--listen-host", "127.0.0.1", "-p", str(ports["mitm"]), "-q",
                 "--set", f"confdir={work / 'mitm'}"], ports["mitm"], work / "mitm.log")).pid
        pids["bare Python forwarder"] = enter(process(
            [py, "-m", "bench.proxy.bare", str(ports["bare"]), str(ports["backend"])],
            ports["bare"], work / "bare.log")).pid
        pids["strangler"] = enter(process([*strangler, str(configs["ours"]), "--workers", "1"],
                                          ports["ours"], work / "ours.log")).pid
        pids["strangler, 50 routes"] = enter(process(
            [*strangler, str(configs["ours50"]), "--workers", "1"], ports["ours50"],
            work / "ours50.log")).pid
        if args.baseline:
            # Trees from before the front door moved out of the proxy have no strangler/cli.py.
            front = ("strangler.cli" if (args.baseline / "strangler" / "cli.py").exists()
                     else "strangler_proxy.cli")
            pids["strangler, baseline tree"] = enter(process(
                [py, "-m", front, "proxy", "--config", str(configs["base"]), "--workers", "1"],
                ports["base"],
                work / "base.log", cwd=args.baseline.resolve())).pid
        for url in targets.values():  # warm up
            wrk(url, 1.0, args.connections)
        for round_ in range(args.rounds):
            for name, url in targets.items():
                result = measured(url, args.seconds if name != "mitmproxy"
                                  else min(args.seconds, 3), args.connections, pids.get(name))
                runs[name].append(result)
                print(f"round {round_ + 1}/{args.rounds} {name:22s} {result.rps:10.0f} req/s "
                      f"p50 {result.p50_ms:7.2f} ms p99 {result.p99_ms:7.2f} ms "
                      f"cpu {result.cpu_us_per_request:7.1f} us/req", flush=True)
        seconds = 5.0 if args.quick else 10.0
        for name, key in (("backend (direct)", "backend"), ("nginx", "nginx"),
                          ("strangler", "ours")):
            res = open_loop("127.0.0.1", ports[key], "/api/hit/1/", 1000.0, seconds)
            latency[name] = {"p50_ms": res.percentile(50), "p99_ms": res.percentile(99),
                             "p999_ms": res.percentile(99.9), "errors": res.errors,
                             "requests": len(res.latencies_ms)}
            print(f"open loop 1000 req/s {name:18s} p50 {latency[name]['p50_ms']:.3f} ms "
                  f"p99 {latency[name]['p99_ms']:.3f} ms", flush=True)
        # scaling: stop nothing else, start a 2-worker proxy, run 2 wrk threads against both
        with process([*strangler, str(configs["ours2"]), "--workers", "2"], ports["ours2"],
                     work / "ours2.log") as two:
            time.sleep(1.0)
            url = f"http://127.0.0.1:{ports['ours2']}/api/hit/1/"
            wrk(url, 1.0, args.connections, threads=2)
            for _ in range(args.rounds):
                for name, target, pid in (
                        ("strangler, 2 workers", url, two.pid),
                        ("strangler, 1 worker", targets["strangler"], pids["strangler"]),
                        ("nginx, 1 worker", targets["nginx"], pids["nginx"])):
                    scaling_runs.setdefault(name, []).append(
                        measured(target, args.seconds, args.connections * 2, pid, threads=2))
            scaling.update({n: median_result(r) for n, r in scaling_runs.items()})
        if args.monolith:
            scaling.update(monolith_overhead(work, args, ports))
    return {"throughput": {n: median_result(r) for n, r in runs.items()},
            "rounds": runs, "latency": latency, "scaling": scaling}


def monolith_overhead(work: Path, args: argparse.Namespace, ports: dict[str, int],
                      ) -> dict[str, WrkResult]:
    from urllib.parse import urlsplit

    target = urlsplit(args.monolith)
    port, admin = free_port(), free_port()
    path = work / "monolith.toml"
    text = routes_file(port, admin, target.port or 80, 1).replace(
        f"127.0.0.1:{target.port}", f"{target.hostname}:{target.port}")
    path.write_text(text)
    strangler = [sys.executable, "-m", "strangler.cli", "proxy", "--config", str(path)]
    out = {"monolith (direct)": wrk(args.monolith, args.seconds, 16)}
    with process(strangler, port, work / "monolith-proxy.log"):
        via = f"http://127.0.0.1:{port}{target.path or '/'}"
        out["monolith via strangler"] = wrk(via, args.seconds, 16)
    return out


def report(results: dict[str, object], args: argparse.Namespace) -> None:
    throughput: dict[str, WrkResult] = results["throughput"]  # type: ignore[assignment]
    nginx = throughput["nginx"].rps
    print()
    nginx_cpu = throughput["nginx"].cpu_us_per_request
    print("| proxy (1 worker) | req/s | p50 ms | p99 ms | vs nginx | CPU µs/req | req/s per "
          "core (1e6/CPU) | per core vs nginx | errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in throughput.items():
        cpu = r.cpu_us_per_request
        per_core = f"{1e6 / cpu:,.0f}" if cpu == cpu else "-"
        versus = f"{nginx_cpu / cpu:.0%}" if cpu == cpu else "-"
        print(f"| {name} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
              f"{r.rps / nginx:.0%} | {cpu:.1f} | {per_core} | {versus} | {r.errors} |")
    rounds: dict[str, list[WrkResult]] = results["rounds"]  # type: ignore[assignment]
    print("\n| per round, vs nginx in the same round | median | min | max |")
    print("| --- | ---: | ---: | ---: |")
    for name, runs in rounds.items():
        ratios = [r.rps / n.rps for r, n in zip(runs, rounds["nginx"], strict=True)]
        print(f"| {name} | {statistics.median(ratios):.0%} | {min(ratios):.0%} | "
              f"{max(ratios):.0%} |")
    if "strangler, baseline tree" in rounds:
        # the "within 5% of before": CPU per request, paired round by round
        diffs = [r.cpu_us_per_request / b.cpu_us_per_request - 1 for r, b in zip(
            rounds["strangler"], rounds["strangler, baseline tree"], strict=True)]
        print(f"\nCPU µs per request vs the baseline tree, paired per round: median "
              f"{statistics.median(diffs):+.1%} (spread {min(diffs):+.1%} … {max(diffs):+.1%})")
    one, fifty = throughput["strangler"], throughput["strangler, 50 routes"]
    print(f"\n50-route table vs 1 route: {fifty.rps / one.rps:.1%} of the 1-route req/s, "
          f"CPU per request {fifty.cpu_us_per_request / one.cpu_us_per_request:.1%} of "
          "the 1-route one")
    latency: dict[str, dict[str, float]] = results["latency"]  # type: ignore[assignment]
    direct = latency["backend (direct)"]
    print("\n| at 1,000 req/s (open loop) | p50 ms | p99 ms | p99.9 ms | added p50 | added p99 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, lat in latency.items():
        added50 = lat["p50_ms"] - direct["p50_ms"]
        added99 = lat["p99_ms"] - direct["p99_ms"]
        print(f"| {name} | {lat['p50_ms']:.3f} | {lat['p99_ms']:.3f} | {lat['p999_ms']:.3f} | "
              f"{added50:+.3f} | {added99:+.3f} |")
    scaling: dict[str, WrkResult] = results["scaling"]  # type: ignore[assignment]
    print("\n| scaling (wrk -t2 -c100) | req/s | p50 ms | p99 ms | CPU µs/req |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, r in scaling.items():
        print(f"| {name} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
              f"{r.cpu_us_per_request:.1f} |")
    data = {"machine": machine(), "args": vars(args),
            "throughput": {k: asdict(v) for k, v in throughput.items()},
            "rounds": {k: [asdict(r) for r in v] for k, v in rounds.items()},
            "latency": latency, "scaling": {k: asdict(v) for k, v in scaling.items()}}
    (OUT / "proxy.json").write_text(json.dumps(data, indent=2, default=str))
    print(f"\nwritten {OUT / 'proxy.json'}")


if __name__ == "__main__":
    main()
