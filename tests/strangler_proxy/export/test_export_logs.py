"""The exported engines' access logs read back as per-route evidence (live engines)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from engine_harness import exported_engine
from proxy_harness import answer_with, running_proxy

from strangler_proxy.export.logs import parse_engine_line, read_engine_log

ROUTES = """
[[routes]]
name = "catalog"
match = { path_prefix = "/api/products/" }
mode = "service"
target = "catalog"

[[routes]]
name = "orders"
match = { path_prefix = "/api/orders/" }
mode = "monolith"
target = "catalog"
"""

LOGS = {"nginx": "access.log", "envoy": "access.log", "haproxy": "engine.log"}


@pytest.mark.parametrize("engine", ["nginx", "haproxy", "envoy"])
def test_engine_log_gives_per_route_counts_sides_statuses_and_latencies(
        tmp_path: Path, engine: str) -> None:
    handlers = {"monolith": answer_with("monolith"), "catalog": answer_with("catalog")}
    with running_proxy(tmp_path, handlers, ROUTES) as ours, \
            exported_engine(engine, ours.config_path, tmp_path / engine) as theirs, \
            httpx.Client(base_url=theirs, timeout=10) as client:
        for n in range(7):
            client.get(f"/api/products/{n}/")
        for n in range(3):
            client.get(f"/api/orders/{n}/")
        client.get("/elsewhere")
        log = tmp_path / engine / LOGS[engine]
        for _ in range(100):  # Envoy writes its access log in batches (here every 0.2 s)
            evidence, _ = read_engine_log(log.read_text().splitlines())
            if sum(e.requests for e in evidence.values()) >= 11:
                break
            time.sleep(0.05)
    assert {name: (e.requests, dict(e.sides), dict(e.statuses))
            for name, e in evidence.items()} == {
        "catalog": (7, {"service": 7}, {200: 7}),
        "orders": (3, {"monolith": 3}, {200: 3}),
        "default": (1, {"monolith": 1}, {200: 1}),
    }
    assert 0 <= evidence["catalog"].percentile(0.99) < 5000
    assert evidence["catalog"].as_dict()["errors"] == 0


def test_lines_that_are_not_records_are_skipped_and_counted() -> None:
    lines = ['[NOTICE] haproxy started', '', '{"route": "a", "status": "x"}',
             '{"route": "a", "status": 502, "side": "service", "latency_s": 0.25}']
    evidence, skipped = read_engine_log(lines)
    assert skipped == 2
    assert evidence["a"].errors_by_side == {"service": 1}
    assert evidence["a"].latencies_ms == [250.0]
    assert parse_engine_line("[1, 2]") is None
