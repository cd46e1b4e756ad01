"""The promotion gate: Wilson lower bound, needed matches, decisions read from the store."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from proxy_harness import answer_with, running_proxy
from shadow_testkit import routes_toml

from strangler.cli import cli
from strangler_proxy.config import ProxyConfig, parse_config
from strangler_proxy.control import read_audit
from strangler_proxy.errors import ProxyError, RouteEditError
from strangler_proxy.shadow import DiffRecord, open_store, parse_since
from strangler_proxy.shadow.gate import (
    check_promotion,
    decide,
    needed_matches,
    since_text,
    wilson_interval,
)

ADMIN_ROUTES = """
[[routes]]
name = "catalog"
match = { path_prefix = "/api/products/" }
mode = "shadow"
target = "catalog"
"""


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


def add_at(store_path: Path, verdicts: list[str], at: float) -> None:
    store = open_store(str(store_path))
    try:
        store.add([DiffRecord(
            route="products", template="/api/products/{id}/", method="GET",
            path="/api/products/1/", verdict=v, monolith_status=200, service_status=200,
            differences=() if v == "match" else (
                {"path": "$.price", "kind": "value", "monolith": 1, "service": 2},), at=at)
            for v in verdicts])
    finally:
        store.close()


def test_since_window_drops_mismatches_from_before_a_fix(config: ProxyConfig,
                                                         tmp_path: Path) -> None:
    store = tmp_path / "d.sqlite3"
    now = time.time()
    # given mismatches from before a fix (3 hours ago) and only matches after it
    add_at(store, ["mismatch"] * 30, at=now - 3 * 3600)
    add_at(store, ["match"] * 40, at=now - 600)
    # when the gate counts all evidence, the old mismatches keep it shut
    everything = check_promotion(config, "products", "service")
    assert not everything.allowed
    assert everything.compared == 70
    assert "40/70" in everything.reason
    assert "[all evidence]" in everything.reason
    # then a window that starts after the fix opens it, and the message names the window
    since = parse_since("1h", now=now)
    windowed = check_promotion(config, "products", "service", since=since)
    assert windowed.allowed, windowed.reason
    assert windowed.compared == 40
    assert f"[{since_text(since)}]" in windowed.reason
    assert "evidence since 20" in windowed.reason


def test_since_window_still_refuses_on_new_mismatches(config: ProxyConfig,
                                                      tmp_path: Path) -> None:
    store = tmp_path / "d.sqlite3"
    now = time.time()
    # given a long clean record, then a regression in the last minutes
    add_at(store, ["match"] * 400, at=now - 3 * 3600)
    add_at(store, ["match"] * 5 + ["mismatch"] * 5, at=now - 60)
    assert check_promotion(config, "products", "service").allowed
    windowed = check_promotion(config, "products", "service", since=now - 3600)
    assert not windowed.allowed
    assert windowed.compared == 10


def test_since_text_is_iso_utc() -> None:
    assert since_text(None) == "all evidence"
    assert since_text(0.0) == "evidence since 1970-01-01T00:00:00+00:00"


def test_cli_routes_set_since_passes_the_gate_and_audits_the_window(tmp_path: Path) -> None:
    store = tmp_path / "d.sqlite3"
    routes_file = tmp_path / "strangler.toml"
    routes_file.write_text(config_text(store))
    now = time.time()
    add_at(store, ["mismatch"] * 30, at=now - 3 * 3600)
    add_at(store, ["match"] * 40, at=now - 600)
    before = routes_file.read_text()
    # without a window the gate refuses and nothing is written
    refused = CliRunner().invoke(cli, ["routes", "set", "products", "--mode", "service",
                                       "--config", str(routes_file)])
    assert isinstance(refused.exception, RouteEditError), refused.output
    assert "gate refused products -> service" in str(refused.exception)
    assert "[all evidence]" in str(refused.exception)
    assert routes_file.read_text() == before
    assert read_audit(routes_file) == []
    # with --since 1h only the matches after the fix count
    allowed = CliRunner().invoke(cli, ["routes", "set", "products", "--mode", "service",
                                       "--since", "1h", "--reason", "prices fixed",
                                       "--config", str(routes_file)])
    assert allowed.exit_code == 0, allowed.output
    assert "changed products: shadow -> service" in allowed.output
    assert "40/40" in allowed.output
    assert "evidence since" in allowed.output
    assert 'mode = "service"' in routes_file.read_text()
    (record,) = read_audit(routes_file)
    assert not record["forced"]
    window = datetime.fromisoformat(record["since"]).timestamp()
    assert now - 3600 - 5 <= window <= now - 3600 + 60


def test_cli_routes_set_bad_since_is_one_line_exit_2(tmp_path: Path) -> None:
    routes_file = tmp_path / "strangler.toml"
    routes_file.write_text(config_text(tmp_path / "d.sqlite3"))
    result = CliRunner().invoke(cli, ["routes", "set", "products", "--mode", "service",
                                      "--since", "yesterday", "--config", str(routes_file)])
    assert isinstance(result.exception, ProxyError)
    assert "--since 'yesterday'" in str(result.exception)
    assert read_audit(routes_file) == []


def test_admin_put_takes_since_and_audits_it(tmp_path: Path) -> None:
    handlers = {"monolith": answer_with("monolith"), "catalog": answer_with("catalog")}
    with running_proxy(tmp_path, handlers, ADMIN_ROUTES) as run:
        url, auth = run.admin_url + "/routes/catalog", {"Authorization": "Bearer secret-token"}
        not_text = httpx.put(url, headers=auth, timeout=5, json={"mode": "service", "since": 5})
        bad = httpx.put(url, headers=auth, timeout=5, json={"mode": "service", "since": "soon"})
        refused = httpx.put(url, headers=auth, timeout=5, json={"mode": "service", "since": "2h"})
        forced = httpx.put(url, headers=auth, timeout=5,
                           json={"mode": "service", "since": "2h", "force": True})
        (record,) = read_audit(run.config_path)
    assert not_text.status_code == 400
    assert (bad.status_code, "--since 'soon'" in bad.json()["error"]) == (409, True)
    assert refused.status_code == 409
    assert "[evidence since 20" in refused.json()["error"]
    assert forced.status_code == 200, forced.text
    assert forced.json()["since"] == record["since"]
    assert abs(datetime.fromisoformat(record["since"]).timestamp() - (time.time() - 7200)) < 60
    assert (record["via"], record["forced"]) == ("admin", True)


def test_cli_routes_set_json_reports_a_gate_refusal(tmp_path: Path) -> None:
    store = tmp_path / "d.sqlite3"
    routes_file = tmp_path / "strangler.toml"
    routes_file.write_text(config_text(store))
    add_at(store, ["mismatch"] * 30, at=time.time() - 600)
    refused = CliRunner().invoke(cli, ["routes", "set", "products", "--mode", "service",
                                       "--json", "--config", str(routes_file)])
    assert isinstance(refused.exception, RouteEditError)
    data = json.loads(refused.stdout)
    assert (data["route"], data["changed"], data["refused"]) == ("products", False, True)
    assert "gate refused products -> service" in data["error"]
