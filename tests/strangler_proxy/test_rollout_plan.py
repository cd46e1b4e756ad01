"""``[routes.rollout]``: plans load; bad ones are refused with the key and the line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from strangler.cli import main
from strangler_proxy.config import parse_config
from strangler_proxy.errors import ConfigError

HEAD = '''[admin]
token = "t"
[upstreams.monolith]
url = "http://127.0.0.1:8000"
[upstreams.catalog]
url = "http://127.0.0.1:8001"

[[routes]]
name = "orders"
match = { path_prefix = "/api/orders/" }

[[routes]]
name = "catalog"
match = { path_prefix = "/api/products/" }
target = "catalog"

[routes.rollout]
'''  # the [routes.rollout] header is line 17, the plan starts on line 18


def plan(body: str) -> str:
    return HEAD + body


def test_a_plan_loads_under_the_route_above_it() -> None:
    config = parse_config(plan('steps = ["shadow", 5, 50, "service"]\ninterval = 30\n'
                               'latency = { max_ratio = 2, dry_run = true }\n'))
    rollout = config.route("catalog").rollout  # type: ignore[union-attr]
    assert rollout is not None
    assert rollout.steps == ("shadow", 5.0, 50.0, "service")
    assert (rollout.interval, rollout.latency.max_ratio, rollout.latency.dry_run) == (30, 2, True)
    assert not rollout.error_rate.dry_run
    assert config.route("orders").rollout is None  # type: ignore[union-attr]


@pytest.mark.parametrize(("body", "expected"), [
    ('steps = [5, 1]\n', "routes[1].rollout.steps[1]: 1 comes after 5; canary percents must "
                         "rise step by step"),
    ('steps = [5, "shadow"]\n', 'routes[1].rollout.steps[1]: "shadow" is step 2; it can only '
                                "be the first step"),
    ('steps = ["service", 5]\n', 'routes[1].rollout.steps[0]: "service" is step 1 of 2'),
    ('steps = [0]\n', "routes[1].rollout.steps[0]: 0 is not a canary percent"),
    ('steps = ["blue"]\n', "routes[1].rollout.steps[0]: 'blue' is not \"shadow\""),
    ('p95_latency = { max = 1 }\n', "routes[1].rollout.p95_latency: unknown check or key; the "
                                    "checks are error_rate, latency, shadow_match, prometheus"),
    ('latency = { p95 = 2 }\n', "routes[1].rollout.latency.p95: unknown key"),
    ('shadow_match = { min_match_rate = 1.0 }\n', "routes[1].rollout.shadow_match."
                                                  "min_match_rate: 1.0 can never be met"),
    ('latency = { max_ratio = 0 }\n', "routes[1].rollout.latency.max_ratio: 0 can never be met"),
    ('error_rate = { max_increase = 2 }\n', "routes[1].rollout.error_rate.max_increase: 2 is "
                                            "not between 0 and 1"),
    ('prometheus = { url = "http://p:9090", query = "up", min = 2, max = 1 }\n',
     "routes[1].rollout.prometheus.min: 2 is above max = 1; no answer can meet both"),
    ('prometheus = { url = "http://p:9090", query = "up" }\n',
     "routes[1].rollout.prometheus: needs max = N and/or min = N"),
    ('interval = 0\n', "routes[1].rollout.interval: 0 is not at least 0.1"),
    ('cutover = "catalog"\nsteps = [5, 100]\n', "routes[1].rollout.cutover: 'catalog' names "
                                               "the cutover that ends the rollout, but the "
                                               "last step is canary 100%, not \"service\""),
])
def test_bad_plans_are_refused_with_key_and_line(body: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(plan(body), "strangler.toml")
    message = str(caught.value)
    assert expected in message
    assert message.endswith("(in strangler.toml, line 18)")


def test_a_plan_needs_a_service_target() -> None:
    text = HEAD.replace('target = "catalog"\n', "") + "steps = [5]\n"
    with pytest.raises(ConfigError, match=r"routes\[1\].rollout: the route's target is the "
                       r"monolith.*line 16"):
        parse_config(text, "strangler.toml")


def test_routes_validate_refuses_a_bad_plan(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "strangler.toml"
    path.write_text(plan("steps = [25, 5]\n"))
    with pytest.raises(SystemExit) as exited:
        main(["routes", "validate", str(path)])
    assert exited.value.code == 2
    assert "routes[1].rollout.steps[1]: 5 comes after 25" in capsys.readouterr().err
    path.write_text(plan("steps = [5, 25]\n"))
    assert CliRunner().invoke(main_group(), ["routes", "validate", str(path)]).exit_code == 0


def main_group():  # type: ignore[no-untyped-def]
    from strangler.cli import cli
    return cli
