"""Run the shadow benchmarks and print the tables for docs/benchmarks.md.

    .venv/bin/python -m bench.shadow            # ~6 minutes
    .venv/bin/python -m bench.shadow --quick    # ~40 s: shorter runs, one round
    PYTHONPATH=/tmp/benchdeps .venv/bin/python -m bench.shadow   # with deepdiff installed there

Results also go to bench/out/shadow.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from bench.shadow import comparator, latency, noise_quality

OUT = Path(__file__).resolve().parents[1] / "out"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.shadow")
    parser.add_argument("--quick", action="store_true", help="shorter runs, one round")
    parser.add_argument("--skip-latency", action="store_true", help="no proxy/nginx part")
    parser.add_argument("--latency-only", action="store_true", help="only the proxy/nginx part")
    args = parser.parse_args()
    print(f"# shadow benchmarks ({platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} cores)\n")
    rows: list[dict[str, object]] = []
    noise: list[dict[str, object]] = []
    if not args.latency_only:
        rows = comparator.run(0.7 if args.quick else 2.0)
        print("## Comparator throughput (one core)\n")
        print(comparator.markdown(rows))
        noise = [noise_quality.run(samples=n) for n in (50, 200, 1000)]
        print("\n## Noise filter quality\n")
        print(noise_quality.MARKDOWN_HEADER)
        for result in noise:
            print(noise_quality.markdown(result))
        for result in noise:
            if result["missed"] or result["noise_reported"]:
                print(f"- {result['samples_per_endpoint']} per endpoint: missed "
                      f"{result['missed'] or 'none'}; noise reported {result['noise_reported']}")
    lat: list[dict[str, object]] = []
    if not args.skip_latency:
        print("\n## Primary latency, shadow on vs off\n")
        # half the max throughput (the goal), then fixed rates the load generator sustains
        for rate in (None, 1000.0, 2000.0):
            result = latency.run(seconds=4.0 if args.quick else 8.0,
                                 rounds=1 if args.quick else 3, rate=rate)
            lat.append(result)
            print(latency.markdown(result) + "\n")
    OUT.mkdir(exist_ok=True)
    (OUT / "shadow.json").write_text(json.dumps(
        {"comparator": rows, "noise": noise, "latency": lat}, indent=2, default=str))


if __name__ == "__main__":
    main()
