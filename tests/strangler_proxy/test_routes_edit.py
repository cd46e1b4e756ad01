"""Flipping routes: round-trip edits keep comments, validation first, gate, audit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_config import MINIMAL

from strangler.cli import cli
from strangler_proxy.config import ProxyConfig
from strangler_proxy.control import read_audit
from strangler_proxy.control.routes_edit import apply_route_change, edit_route_text, is_promotion
from strangler_proxy.errors import ConfigError, RouteEditError


@dataclass(frozen=True)
class FakeGate:
    """Stands in for the shadow side's gate, whose evidence needs a diff store."""

    allowed: bool
    reason: str = "only 3 of 200 comparisons"


def gate(allowed: bool) -> object:
    calls: list[tuple[str, str]] = []

    def check(config: ProxyConfig, route: str, mode: str) -> FakeGate:
        calls.append((route, mode))
        return FakeGate(allowed)
    check.calls = calls  # type: ignore[attr-defined]
    return check


@pytest.fixture
def routes_file(tmp_path: Path) -> Path:
    path = tmp_path / "strangler.toml"
    path.write_text(MINIMAL.replace('mode = "canary"', 'mode = "canary"  # ramping up'))
    return path


def test_edit_keeps_comments_and_layout() -> None:
    text = MINIMAL.replace('percent = 10', 'percent = 10   # ten percent first')
    new, old, after = edit_route_text(text, "catalog", "canary", 25)
    assert (old, after) == ({"mode": "canary", "percent": 10}, {"mode": "canary", "percent": 25})
    assert new == text.replace("percent = 10 ", "percent = 25 ")


def test_cli_set_edits_in_place_prints_change_and_audits(routes_file: Path) -> None:
    before = routes_file.read_text()
    result = CliRunner().invoke(cli, ["routes", "set", "catalog", "--mode", "shadow",
                                      "--reason", "compare first", "--config", str(routes_file)])
    assert result.exit_code == 0, result.output
    assert "changed catalog: canary 10% -> shadow" in result.output
    after = routes_file.read_text()
    assert after == before.replace('"canary"  # ramping up', '"shadow"  # ramping up')
    (record,) = read_audit(routes_file)
    assert record["route"] == "catalog"
    assert record["reason"] == "compare first"
    assert record["old"] == {"mode": "canary", "percent": 10}
    assert record["new"] == {"mode": "shadow", "percent": 10}
    assert record["who"]
    assert not record["forced"]


def test_unknown_route_is_one_line_exit_2(routes_file: Path) -> None:
    result = CliRunner().invoke(cli, ["routes", "set", "nope", "--mode", "service",
                                      "--config", str(routes_file)])
    assert result.exit_code != 0
    assert isinstance(result.exception, RouteEditError)
    assert "no route named 'nope'" in str(result.exception)


def test_promotion_refused_by_gate_unless_forced_and_forcing_is_audited(routes_file: Path,
                                                                        ) -> None:
    before = routes_file.read_text()
    refusing = gate(False)
    with pytest.raises(RouteEditError, match="gate refused catalog -> service"):
        apply_route_change(routes_file, "catalog", "service", None, gate=refusing)
    assert routes_file.read_text() == before
    change = apply_route_change(routes_file, "catalog", "service", None, reason="hotfix",
                                force=True, gate=refusing)
    assert change.forced
    assert read_audit(routes_file)[-1]["forced"] is True


def test_rollback_never_asks_the_gate(routes_file: Path) -> None:
    refusing = gate(False)
    change = apply_route_change(routes_file, "catalog", "monolith", None, gate=refusing)
    assert change.new["mode"] == "monolith"
    assert refusing.calls == []  # type: ignore[attr-defined]


def test_allowed_promotion_passes(routes_file: Path) -> None:
    allowing = gate(True)
    apply_route_change(routes_file, "catalog", "canary", 50, gate=allowing)
    assert allowing.calls == [("catalog", "canary")]  # type: ignore[attr-defined]
    assert 'percent = 50' in routes_file.read_text()


def test_is_promotion() -> None:
    assert is_promotion({"mode": "shadow", "percent": 0}, {"mode": "canary", "percent": 5})
    assert is_promotion({"mode": "canary", "percent": 5}, {"mode": "canary", "percent": 6})
    assert not is_promotion({"mode": "canary", "percent": 5}, {"mode": "canary", "percent": 1})
    assert not is_promotion({"mode": "service", "percent": 0}, {"mode": "canary", "percent": 9})
    assert not is_promotion({"mode": "canary", "percent": 5}, {"mode": "monolith", "percent": 5})


def test_a_change_that_breaks_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(MINIMAL.replace('percent = 10\n', ''))
    with pytest.raises(RouteEditError, match="canary needs --percent"):
        apply_route_change(path, "catalog", "canary", None)


def test_validate_and_list_json(routes_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(cli, ["routes", "validate", str(routes_file)])
    assert ok.exit_code == 0
    assert "ok (1 routes, 2 upstreams" in ok.output
    listed = runner.invoke(cli, ["routes", "list", "--config", str(routes_file), "--json"])
    data = json.loads(listed.output)
    assert data["routes"][0]["name"] == "catalog"
    assert data["routes"][0]["match"]["path_prefix"] == "/api/products/"
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL.replace("percent = 10", "percent = 101"))
    failed = runner.invoke(cli, ["routes", "validate", str(bad)])
    assert failed.exit_code != 0
    assert isinstance(failed.exception, ConfigError)
    assert "routes[0].percent: 101 is not between 0 and 100" in str(failed.exception)


def test_cli_subprocess_error_is_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL.replace("percent = 10", "percent = 101"))
    done = subprocess.run([sys.executable, "-m", "strangler.cli", "routes", "validate",
                           str(bad)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "line 19" in done.stderr


def test_percent_outside_canary_is_refused_with_the_reason(routes_file: Path) -> None:
    before = routes_file.read_text()
    result = CliRunner().invoke(cli, ["routes", "set", "catalog", "--mode", "shadow",
                                      "--percent", "20", "--config", str(routes_file)])
    assert isinstance(result.exception, RouteEditError)
    assert "--percent applies only to canary mode" in str(result.exception)
    assert routes_file.read_text() == before


def test_service_back_to_monolith_warns_that_the_monolith_copy_may_be_stale(
        routes_file: Path) -> None:
    apply_route_change(routes_file, "catalog", "service", None, gate=gate(True))
    result = CliRunner().invoke(cli, ["routes", "set", "catalog", "--mode", "monolith",
                                      "--config", str(routes_file)])
    assert result.exit_code == 0, result.output
    assert "may be stale" in result.output
    assert "strangler reconcile" in result.output
    forward = CliRunner().invoke(cli, ["routes", "set", "catalog", "--mode", "shadow",
                                       "--config", str(routes_file)])
    assert "stale" not in forward.output  # monolith -> shadow moves nothing back


def test_strangler_config_env_is_the_default_for_every_config_option(routes_file: Path,
                                                                      ) -> None:
    import subprocess
    import sys

    env = {"STRANGLER_CONFIG": str(routes_file), "PATH": "/usr/bin:/bin"}
    for argv in (["routes", "list", "--json"], ["routes", "validate"],
                 ["shadow", "report", "--json"]):
        done = subprocess.run([sys.executable, "-m", "strangler.cli", *argv], env=env,
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, (argv, done.stderr)
    for command in (["proxy"], ["routes", "set"], ["shadow", "report"], ["replay"]):
        help_text = CliRunner().invoke(cli, [*command, "--help"]).output
        assert "STRANGLER_CONFIG" in help_text, command


def test_json_errors_are_json_with_the_same_exit_status(tmp_path: Path) -> None:
    import subprocess
    import sys

    missing = str(tmp_path / "none.toml")
    plain = subprocess.run([sys.executable, "-m", "strangler.cli", "routes", "list",
                            "--config", missing], capture_output=True, text=True, timeout=60,
                           check=False)
    as_json = subprocess.run([sys.executable, "-m", "strangler.cli", "routes", "list",
                              "--config", missing, "--json"], capture_output=True, text=True,
                             timeout=60, check=False)
    assert plain.returncode == as_json.returncode == 2
    record = json.loads(as_json.stdout)
    assert record == {"error": f"{missing}: no such routes file",
                      "hint": "create one (see docs/config.md) or pass --config FILE"}
    usage = subprocess.run([sys.executable, "-m", "strangler.cli", "routes", "set",
                            "--json"], capture_output=True, text=True, timeout=60, check=False)
    assert usage.returncode == 2
    assert json.loads(usage.stdout)["error"] == "Missing argument 'NAME'."


def test_piped_tables_are_not_wrapped_at_80_columns(tmp_path: Path) -> None:
    import subprocess
    import sys

    long_name = "a-route-with-a-name-much-longer-than-eighty-columns-would-ever-let-it-be-shown"
    path = tmp_path / "strangler.toml"
    path.write_text(MINIMAL.replace('name = "catalog"', f'name = "{long_name}"'))
    done = subprocess.run([sys.executable, "-m", "strangler.cli", "routes", "list",
                           "--config", str(path)], capture_output=True, text=True, timeout=60,
                          check=True)
    assert any(long_name in line for line in done.stdout.splitlines())


def test_a_cut_over_route_goes_back_only_with_the_cutovers_undo(routes_file: Path) -> None:
    # given a route that `strangler cutover` flipped to the service (via="cutover")
    apply_route_change(routes_file, "catalog", "service", None, gate=gate(True), via="cutover")
    # when a person flips it back by hand, then it is refused, pointing at the undo
    before = routes_file.read_text()
    for mode in ("monolith", "shadow", "canary"):
        with pytest.raises(RouteEditError, match=r"cutover CONTEXT --undo"):
            apply_route_change(routes_file, "catalog", mode, 5 if mode == "canary" else None)
    assert routes_file.read_text() == before
    # and the undo itself (via="cutover") flips it, after which hand flips work again
    apply_route_change(routes_file, "catalog", "monolith", None, via="cutover")
    apply_route_change(routes_file, "catalog", "service", None, gate=gate(True))
    change = apply_route_change(routes_file, "catalog", "monolith", None)
    assert change.new["mode"] == "monolith"
