"""The cutover's write pause over many cutover/undo cycles, and a long soak of the checker.

    python -m bench.sync_soak                      # 20 cycles, SQLite, under the workload
    python -m bench.sync_soak --pg postgresql://postgres@127.0.0.1:5432/postgres
    python -m bench.sync_soak --faults --seconds 300   # the checker's soak, with kills

Runs the harness of tests/extracted/jepsen.py (monolith, service, both relays, writers that
write through whichever side the routes file names, the monolith's workload generator),
then the independent check. Prints the pause of every cutover and undo (fence to route
switch) with p50/p99/max against the goal (p99 <= 2 s), and the checker's counts.
Everything listens on 127.0.0.1 with ports from the OS and is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests" / "extracted"
sys.path[:0] = [str(TESTS), str(TESTS / "sync")]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "extracted.catalog.settings")

from jepsen import Cluster, jepsen_run  # noqa: E402

GOAL_P99 = 2.0


def _databases(pg: str | None, made: list[str], workdir: Path):  # type: ignore[no-untyped-def]
    def make(name: str) -> str:
        if pg is None:
            import sqlite3

            path = workdir / f"{name}.sqlite3"
            sqlite3.connect(path).close()
            return f"sqlite:///{path}"
        import psycopg

        db = f"strangler_soak_{name}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(pg, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db}"')
        made.append(db)
        return pg.rsplit("/", 1)[0] + f"/{db}"

    return make


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sync_soak")
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=0.0,
                        help="how long to write (default: 4 s per cutover and per undo)")
    parser.add_argument("--pg", default=None, help="PostgreSQL server URL (default SQLite)")
    parser.add_argument("--faults", action="store_true", help="also kill relays and servers")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    seconds = args.seconds or args.cycles * 8.0
    made: list[str] = []
    with tempfile.TemporaryDirectory(prefix="strangler-soak-") as tmp:
        cluster = Cluster(Path(tmp), _databases(args.pg, made, Path(tmp)), args.pg is not None)
        try:
            verdict, faults, history = jepsen_run(cluster, seconds, args.seed, args.cycles,
                                                  faults_on=args.faults, workload=True)
            audit = [json.loads(line) for line in
                     (Path(tmp) / "cutover.jsonl").read_text().splitlines()]
        finally:
            cluster.stop()
            if made:
                import psycopg

                with psycopg.connect(args.pg, autocommit=True) as conn:
                    for db in made:
                        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    pauses = faults.pauses
    steps: dict[str, list[float]] = {}
    for record in audit:
        for name, took in record["steps"].items():
            steps.setdefault(name, []).append(took)
    print("median seconds per step: " + ", ".join(
        f"{name} {statistics.median(took):.3f}" for name, took in steps.items()))
    print(f"database: {'PostgreSQL' if args.pg else 'SQLite'}; {faults.cutovers} cutovers, "
          f"{faults.undos} undos in {seconds:.0f} s of writes")
    print("pauses (s): " + " ".join(f"{p:.3f}" for p in pauses))
    p99 = _percentile(pauses, 99)
    print(f"write pause p50 {statistics.median(pauses):.3f} s, p99 {p99:.3f} s, "
          f"max {max(pauses):.3f} s (goal p99 <= {GOAL_P99} s: "
          f"{'met' if p99 <= GOAL_P99 else 'NOT met'}); longest refusal a client saw "
          f"{history.longest_refusal:.3f} s")
    print(json.dumps(dict(verdict.summary(), faults={k: v for k, v in vars(faults).items()
                                                     if k != "pauses"},
                          acknowledged=history.acknowledged, unknown=history.unknown,
                          refused=history.refused)))
    return 0 if verdict.ok and p99 <= GOAL_P99 else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
