"""Noise filter quality on generated response pairs with known differences and noisy fields.

Each endpoint answers JSON with fields that vary from call to call on *both* sides at the
same rate (timestamps, request ids, cache ages, rankings) and fields where the service was
given real differences at known rates (a type change, a rare off-by-one, an order change, a
noisy field the service also gets wrong more often). Pairs go through the real comparator
with no ignore rules; the noise model then has to tell them apart from the counts alone.
"""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

from strangler_proxy.exchange import RecordedResponse
from strangler_proxy.shadow.compare import compare
from strangler_proxy.shadow.noise import NOISE, SELF, SERVICE, NoiseModel
from strangler_proxy.shadow.rules import compile_rules, generalize

HEADERS = (("Content-Type", "application/json"),)
# field -> chance it changes between any two calls (both sides alike)
NOISY = {"served_at": 1.0, "request_id": 1.0, "cache_age": 0.3, "rank": 0.1, "discount": 0.1}
# (template, path, kind, rate on the service only)
INJECTED = [
    ("/api/products/{id}/", "$.price", "type", 1.0),
    ("/api/products/{id}/", "$.stock", "value", 0.02),
    ("/api/products/{id}/", "$.tags", "order", 0.5),
    ("/api/categories/{id}/", "$.name", "value", 0.2),
    ("/api/categories/{id}/", "$.discount", "value", 0.5),  # noisy field, wrong more often
    ("/api/brands/{id}/", "$.items[*].sku", "value", 0.05),
]
TEMPLATES = ("/api/products/{id}/", "/api/categories/{id}/", "/api/brands/{id}/")


def _answer(rng: random.Random, base: dict[str, Any], template: str,
            service: bool) -> dict[str, Any]:
    data = json.loads(json.dumps(base))
    for field, rate in NOISY.items():
        if rng.random() < rate:
            data[field] = rng.randint(0, 10**6) if field != "request_id" else str(uuid.uuid4())
    if not service:
        return data
    for tmpl, path, _kind, rate in INJECTED:
        if tmpl != template or rng.random() >= rate:
            continue
        if path == "$.price":
            data["price"] = float(data["price"])
        elif path == "$.stock":
            data["stock"] += 1
        elif path == "$.tags":
            data["tags"] = list(reversed(data["tags"]))
        elif path == "$.name":
            data["name"] = data["name"].upper()
        elif path == "$.discount":
            data["discount"] = -1
        elif path == "$.items[*].sku":
            data["items"][rng.randrange(len(data["items"]))]["sku"] = "X"
    return data


def _base(rng: random.Random, i: int) -> dict[str, Any]:
    return {"id": i, "name": f"thing {i}", "price": "9.50", "stock": 5, "tags": ["a", "b"],
            "served_at": 0, "request_id": "", "cache_age": 0, "rank": 0, "discount": 0,
            "items": [{"sku": f"S{j}", "qty": j} for j in range(3)]}


def _diff_keys(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, str]]:
    result = compare(RecordedResponse(200, HEADERS, json.dumps(a).encode()),
                     RecordedResponse(200, HEADERS, json.dumps(b).encode()), compile_rules())
    return [(generalize(d.path), d.kind) for d in result.differences]


def run(samples: int = 200, noise_percent: float = 25.0, seed: int = 11) -> dict[str, Any]:
    """Generate traffic, learn noise, score what gets reported against the ground truth."""
    rng = random.Random(seed)
    model = NoiseModel()
    seen: set[tuple[str, str, str]] = set()
    for template in TEMPLATES:
        for i in range(samples):
            base = _base(rng, i)
            primary = _answer(rng, base, template, service=False)
            diffs = _diff_keys(primary, _answer(rng, base, template, service=True))
            model.observe(template, SERVICE, diffs)
            seen |= {(template, p, k) for p, k in diffs}
            if rng.random() * 100 < noise_percent:
                model.observe(template, SELF, _diff_keys(
                    primary, _answer(rng, base, template, service=False)))
    truth = {(t, p, k) for t, p, k, _ in INJECTED}
    reported = {key for key in seen if model.verdict(*key) != NOISE}
    noise_paths = seen - truth
    return {
        "samples_per_endpoint": samples, "noise_percent": noise_percent,
        "true_differences": len(truth), "true_found": len(truth & reported),
        "missed": sorted(f"{t} {p} {k}" for t, p, k in truth - reported),
        "noisy_paths_seen": len(noise_paths),
        "noise_reported": sorted(f"{t} {p} {k}" for t, p, k in noise_paths & reported),
        "naive_reported": len(seen),  # a tool without noise learning reports every path seen
    }


def markdown(result: dict[str, Any]) -> str:
    """The lines for docs/benchmarks.md."""
    found, total = result["true_found"], result["true_differences"]
    noise = len(result["noise_reported"])
    return (f"| {result['samples_per_endpoint']} per endpoint, {result['noise_percent']:.0f}% "
            f"asked twice | {found}/{total} | {noise}/{result['noisy_paths_seen']} | "
            f"{result['naive_reported']} paths ({result['noisy_paths_seen']} of them noise) |")


MARKDOWN_HEADER = ("| traffic | true differences found | noisy paths reported as real | "
                   "without noise learning |\n|---|---|---|---|")
