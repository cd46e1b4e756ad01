"""The change comparison of shadowed writes beside its anchor, the body comparison.

For N events of a product-sized payload, :func:`compare_changes` (events paired and their
payloads compared) is timed beside :func:`compare` of an answer whose JSON body holds the
same N payloads: the ratio says what comparing a write's changes costs on top of comparing
its answer, per exchange.

    .venv/bin/python -m bench.shadow.changes            # ~6 s of CPU
    .venv/bin/python -m bench.shadow.changes --quick    # ~2 s of CPU
"""

from __future__ import annotations

import argparse
import json
import timeit
from typing import Any

from strangler_proxy.exchange import RecordedResponse
from strangler_proxy.shadow.compare import ChangeSet, compare, compare_changes

JSON = (("Content-Type", "application/json"),)


def payload(i: int) -> dict[str, Any]:
    """A product row as the monolith's outbox publishes it."""
    return {"sku": f"SKU-{i:06d}", "name": f"Eco Lamp {i}", "slug": f"eco-lamp-{i}",
            "description": "A lamp. " * 25, "category_id": 4, "brand_id": 9,
            "price": "24.90", "currency": "EUR", "is_active": True,
            "created_at": "2026-11-26T10:00:00.123456+00:00",
            "updated_at": f"2026-11-26T11:02:{i % 60:02d}.000001+00:00"}


def events(n: int, shift: float = 0.0) -> tuple[dict[str, Any], ...]:
    out = []
    for i in range(n):
        data = payload(i)
        if shift:  # the other side's own write time
            data["updated_at"] = "2026-11-26T11:03:00.5Z"
        out.append({"aggregate_type": "store.Product", "aggregate_id": str(i),
                    "type": "updated", "sequence": i + 1, "payload": data})
    return tuple(out)


def per_call(fn: Any, seconds: float) -> float:
    """Seconds per call, best of three runs of about ``seconds`` / 3 each."""
    once = timeit.timeit(fn, number=10) / 10
    number = max(10, int(seconds / 3 / max(once, 1e-7)))
    return min(timeit.repeat(fn, number=number, repeat=3)) / number


def run(seconds: float = 3.0) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for n in (1, 10, 100):
        changes = ChangeSet(events(n), events(n, shift=1.0))
        body = json.dumps([e["payload"] for e in events(n)]).encode()
        answer = RecordedResponse(200, JSON, body)
        other = RecordedResponse(200, JSON, body.replace(b'"EUR"', b'"EUR" '))  # same JSON
        change_s = per_call(lambda c=changes: compare_changes(c), seconds)
        body_s = per_call(lambda a=answer, b=other: compare(a, b), seconds)
        rows.append({"events": n, "changes_us": round(change_s * 1e6, 1),
                     "body_us": round(body_s * 1e6, 1), "ratio": round(change_s / body_s, 2)})
    return rows


def markdown(rows: list[dict[str, object]]) -> str:
    lines = ["| events | compare_changes | compare (same payloads as a body) | ratio |",
             "|---:|---:|---:|---:|"]
    lines += [f"| {r['events']} | {r['changes_us']} µs | {r['body_us']} µs | {r['ratio']} |"
              for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.shadow.changes")
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    args = parser.parse_args()
    print(markdown(run(1.0 if args.quick else 3.0)))


if __name__ == "__main__":
    main()
