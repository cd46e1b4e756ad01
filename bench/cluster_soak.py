"""Replica convergence over many flips: N `strangler proxy` processes sharing one flag state.

    python -m bench.cluster_soak --pg postgresql://postgres@127.0.0.1:5432/postgres
    python -m bench.cluster_soak --pg URL --replicas 5 --flips 300 --poll 5

The harness of tests/strangler_proxy/test_cluster.py (real replicas, real upstreams, clients
sending to every replica without pause). Each flip is made on the next replica in turn
through its admin API; the time from the flip request until every replica serves it is the
convergence. The anchor is the flip request itself: what one proxy takes to edit, gate,
write, audit and apply a flip. Prints p50/p90/p99/max of both, the ratio, the requests and
the failed ones (the goal: every replica within 1 s, none failed).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests" / "strangler_proxy"
sys.path[:0] = [str(TESTS)]


def _quantiles(values: list[float]) -> str:
    ordered = sorted(values)
    pick = [ordered[min(len(ordered) - 1, int(len(ordered) * q))] for q in (0.5, 0.9, 0.99)]
    return " ".join(f"{v * 1000:7.1f}" for v in [*pick, ordered[-1]])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster_soak")
    parser.add_argument("--pg", default=os.environ.get("STRANGLER_TEST_PG_URL", ""),
                        help="PostgreSQL URL (default: $STRANGLER_TEST_PG_URL)")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--flips", type=int, default=200)
    parser.add_argument("--poll", type=float, default=5.0,
                        help="[cluster].poll_interval (5 s: flips must arrive by NOTIFY)")
    args = parser.parse_args(argv)
    if not args.pg:
        print("bench.cluster_soak: no PostgreSQL; pass --pg postgresql://... or set "
              "STRANGLER_TEST_PG_URL", file=sys.stderr)
        return 2
    os.environ["STRANGLER_TEST_PG_URL"] = args.pg
    import httpx
    from test_cluster import AUTH, Load, cluster, converge

    convergence: list[float] = []
    requests: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp, \
            cluster(Path(tmp), args.replicas, poll=args.poll) as c, \
            Load(c.replicas) as load, contextlib.ExitStack() as stack:
        admins = [stack.enter_context(httpx.Client(base_url=f"http://127.0.0.1:{r.admin}",
                                                   headers=AUTH, timeout=5.0))
                  for r in c.replicas]
        for index in range(args.flips):
            mode = "service" if index % 2 == 0 else "monolith"
            started = time.monotonic()
            reply = admins[index % len(admins)].put("/routes/catalog", json={
                "mode": mode, "force": True, "reason": "bench"})
            reply.raise_for_status()
            requests.append(time.monotonic() - started)
            convergence.append(converge(admins, mode, started, timeout=10.0))
    print(f"{args.replicas} replicas, {args.flips} flips, poll {args.poll:g} s, load "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'ms':34} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7}")
    print(f"{'anchor: the flip on its replica':34} {_quantiles(requests)}")
    print(f"{'every replica serves it':34} {_quantiles(convergence)}")
    ratio = statistics.median(convergence) / statistics.median(requests)
    over = sum(1 for t in convergence if t >= 1.0)
    print(f"ratio (p50): {ratio:.2f}x the one-proxy flip; {over} flips over 1 s; "
          f"{load.ok} requests, {len(load.failures)} failed")
    return 1 if load.failures or over else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
