"""The promotion gate: Wilson lower bound, needed matches, decisions read from the store."""

from __future__ import annotations

from pathlib import Path

import pytest
from shadow_testkit import routes_toml

from strangler_proxy.config import ProxyConfig, parse_config
from strangler_proxy.gate import check_promotion, decide, needed_matches, wilson_interval
from strangler_proxy.store import DiffRecord, open_store


def config_text(store: Path, min_compared: int = 20, rate: float = 0.9) -> str:
    return routes_toml(store, gate=(min_compared, rate))


def add(store_path: Path, verdicts: list[str], kind: str = "service",
        diff_path: str = "$.price") -> None:
    store = open_store(str(store_path))
    try:
        store.add([DiffRecord(
            route="products", template="/api/products/{id}/", method="GET",
            path="/api/products/1/", verdict=v, monolith_status=200, service_status=200,
            kind=kind, differences=() if v == "match" else (
                {"path": diff_path, "kind": "value", "monolith": 1, "service": 2},))
            for v in verdicts])
    finally:
        store.close()


@pytest.fixture
def config(tmp_path: Path) -> ProxyConfig:
    return parse_config(config_text(tmp_path / "d.sqlite3"), str(tmp_path / "s.toml"))


def test_wilson_interval_is_known_values() -> None:
    low, high = wilson_interval(95, 100)
    assert (round(low, 4), round(high, 4)) == (0.8882, 0.9785)


@pytest.mark.parametrize(("matched", "compared", "min_compared", "rate"), [
    (0, 0, 200, 0.99), (50, 60, 10, 0.9), (99, 100, 100, 0.95), (10, 10, 50, 0.5)])
def test_needed_is_the_smallest_number_of_further_matches(matched: int, compared: int,
                                                          min_compared: int,
                                                          rate: float) -> None:
    needed = needed_matches(matched, compared, min_compared, rate)
    assert needed > 0
    after = decide("r", "service", compared + needed, matched + needed, min_compared, rate)
    before = decide("r", "service", compared + needed - 1, matched + needed - 1,
                    min_compared, rate)
    assert after.allowed
    assert not before.allowed


def test_safe_modes_are_always_allowed(config: ProxyConfig) -> None:
    for mode in ("monolith", "shadow"):
        assert check_promotion(config, "products", mode).allowed


def test_gate_refuses_with_numbers_then_allows_on_evidence(config: ProxyConfig,
                                                           tmp_path: Path) -> None:
    store = tmp_path / "d.sqlite3"
    # given a few matches and a mismatch
    add(store, ["match"] * 10 + ["mismatch"])
    refused = check_promotion(config, "products", "canary")
    assert not refused.allowed
    assert (refused.compared, refused.needed > 0) == (11, True)
    assert "10/11" in refused.reason
    # when the needed matches arrive
    add(store, ["match"] * refused.needed)
    allowed = check_promotion(config, "products", "service")
    # then the gate opens
    assert allowed.allowed, allowed.reason
    assert allowed.needed == 0


def test_learned_noise_does_not_count_against_the_service(config: ProxyConfig,
                                                          tmp_path: Path) -> None:
    store = tmp_path / "d.sqlite3"
    add(store, ["mismatch"] * 40, diff_path="$.served_at")
    add(store, ["mismatch"] * 40, kind="self", diff_path="$.served_at")
    decision = check_promotion(config, "products", "service")
    assert decision.allowed, decision.reason


def test_rate_one_refuses_forever_after_a_mismatch() -> None:
    decision = decide("r", "service", 1000, 999, 10, 1.0)
    assert (decision.allowed, decision.needed) == (False, -1)
    assert "no number" in decision.reason
