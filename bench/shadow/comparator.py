"""Comparator throughput on 1 KB and 100 KB JSON bodies, against baselines in the same run.

Baselines: ``json.loads`` of both bodies and ``==`` (what a naive comparator does, and a
floor: it finds no paths and ignores nothing), and deepdiff when it is importable (install it
for the bench only: ``pip install --target /tmp/benchdeps deepdiff`` and run with
``PYTHONPATH=/tmp/benchdeps``). Bodies differ only in an ignored ``served_at`` field per item
and one real value, so every comparator has to walk the whole document.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

from strangler_proxy.exchange import RecordedResponse
from strangler_proxy.shadow.compare import compare
from strangler_proxy.shadow.rules import compile_rules

HEADERS = (("Content-Type", "application/json"),)


def make_body(target_bytes: int, seed: int, served_at: str) -> bytes:
    """A product list of about ``target_bytes`` bytes of JSON."""
    rng = random.Random(seed)
    items: list[dict[str, Any]] = []
    body = b""
    while len(body) < target_bytes:
        i = len(items)
        items.append({"id": i, "name": f"Product {i}", "price": f"{rng.randint(1, 999)}.99",
                      "tags": ["a", "b"], "stock": rng.randint(0, 50),
                      "updated_at": served_at})
        body = json.dumps({"count": len(items), "served_at": served_at, "results": items}
                          ).encode()
    return body


def pair(size: int) -> tuple[bytes, bytes]:
    a = make_body(size, 1, "2024-01-01T00:00:00Z")
    b_data = json.loads(make_body(size, 1, "2024-01-01T00:00:09Z"))
    b_data["results"][-1]["stock"] += 1  # one real difference
    return a, json.dumps(b_data).encode()


def rate(function: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``function`` over about ``seconds`` (after a warm-up)."""
    function()
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        function()
        count += 1
    return count / elapsed


def run(seconds: float = 2.0) -> list[dict[str, Any]]:
    """Comparisons per second per body size and comparator."""
    try:
        from deepdiff import DeepDiff
    except ImportError:
        DeepDiff = None  # noqa: N806
    return [_row(size, seconds, DeepDiff) for size in (1024, 100 * 1024)]


def _row(size: int, seconds: float, deepdiff: Any) -> dict[str, Any]:
    rules = compile_rules({"ignore": ["served_at", "results[*].updated_at"]})
    a, b = pair(size)
    mono, serv = RecordedResponse(200, HEADERS, a), RecordedResponse(200, HEADERS, b)
    result = compare(mono, serv, rules)
    last = len(json.loads(b)["results"]) - 1
    assert [d.path for d in result.differences] == [f"$.results[{last}].stock"], result
    row: dict[str, Any] = {
        "body_bytes": len(a), "ours": rate(lambda: compare(mono, serv, rules), seconds),
        "json_loads_eq": rate(lambda: json.loads(a) == json.loads(b), seconds)}
    if deepdiff is not None:
        excl = [r"root\['served_at'\]", r"root\['results'\]\[\d+\]\['updated_at'\]"]
        found = deepdiff(json.loads(a), json.loads(b), exclude_regex_paths=excl)
        assert len(found.get("values_changed", ())) == 1, found  # the one real difference
        row["deepdiff"] = rate(lambda: deepdiff(json.loads(a), json.loads(b),
                                                exclude_regex_paths=excl), seconds)
    return row


def markdown(rows: list[dict[str, Any]]) -> str:
    """The table for docs/benchmarks.md."""
    lines = ["| body | ours (cmp/s) | json.loads + == (cmp/s) | ours / loads+== | deepdiff "
             "(cmp/s) | ours / deepdiff |", "|---|---|---|---|---|---|"]
    for r in rows:
        deep = r.get("deepdiff")
        deep_rate = "–" if deep is None else f"{deep:,.0f}"
        deep_ratio = "–" if deep is None else f"{r['ours'] / deep:.1f}x"
        lines.append(f"| {r['body_bytes'] / 1024:.0f} KB | {r['ours']:,.0f} | "
                     f"{r['json_loads_eq']:,.0f} | {r['ours'] / r['json_loads_eq']:.2f} | "
                     f"{deep_rate} | {deep_ratio} |")
    return "\n".join(lines)
