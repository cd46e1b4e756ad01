"""Run every benchmark in bench/, each beside its anchor, one after the other.

    python -m bench            # all of them
    python -m bench proxy      # only some: monolith_rps, proxy, shadow, analysis, relay_amqp

Each benchmark prints its own table with the ratio to its anchor; results are recorded by
hand in docs/benchmarks.md with the command and the machine.
"""

from __future__ import annotations

import subprocess
import sys

BENCHES = ("monolith_rps", "proxy", "shadow", "analysis", "sync_soak", "relay_amqp")


def main(argv: list[str]) -> int:
    chosen = argv or list(BENCHES)
    unknown = sorted(set(chosen) - set(BENCHES))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHES)}")
        return 2
    failed = []
    for name in chosen:
        print(f"\n=== bench.{name} ===", flush=True)
        if subprocess.run([sys.executable, "-m", f"bench.{name}"], check=False).returncode:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
