"""The shadow worker's CPU budget, on fake clocks (pure), and its routes-file key."""

from __future__ import annotations

import asyncio

import pytest

from strangler_proxy.config import parse_config
from strangler_proxy.errors import ConfigError
from strangler_proxy.shadow.cpu_budget import CpuBudget


class Clocks:
    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0


def budget(percent: float, clocks: Clocks) -> CpuBudget:
    return CpuBudget(percent, burst=0.05, wall=lambda: clocks.wall, cpu=lambda: clocks.cpu)


def test_within_the_budget_there_is_no_pause_and_over_it_the_pause_restores_the_share() -> None:
    clocks = Clocks()
    cap = budget(25, clocks)
    clocks.wall, clocks.cpu = 1.0, 0.25  # exactly a quarter of a core
    assert cap.overdraft() == 0.0
    clocks.cpu = 0.45  # 0.2 s over: at 25%, 0.8 s of wall time pays it back
    assert cap.overdraft() == pytest.approx(0.8)
    clocks.wall = 1.8
    assert cap.overdraft() == 0.0


def test_idle_time_banks_at_most_the_burst() -> None:
    clocks = Clocks()
    cap = budget(10, clocks)
    clocks.wall = 100.0  # 100 s idle would be 10 s of credit; only 0.05 s is kept
    assert cap.overdraft() == 0.0
    clocks.cpu = 0.15  # 0.1 s beyond the burst: 1 s of pause at 10%
    assert cap.overdraft() == pytest.approx(1.0)


def test_wait_sleeps_off_the_overdraft_and_counts_it() -> None:
    clocks = Clocks()
    cap = CpuBudget(50, burst=0.0, cpu=lambda: clocks.cpu)
    clocks.cpu = 0.1  # 0.1 s of CPU at once: 0.2 s of pause at 50%

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await cap.wait()
        return loop.time() - start

    waited = asyncio.run(main())
    assert 0.15 < waited < 2.0
    assert cap.pauses >= 1
    assert CpuBudget(100).unlimited


ROUTES = """
[admin]
token = "t"
[upstreams.monolith]
url = "http://127.0.0.1:9"
[shadow]
worker_cpu_percent = {value}
"""


def test_worker_cpu_percent_is_validated() -> None:
    assert parse_config(ROUTES.format(value=30), "s.toml").shadow.worker_cpu_percent == 30
    assert parse_config(ROUTES.replace("worker_cpu_percent = {value}\n", ""),
                        "s.toml").shadow.worker_cpu_percent == 100
    expected = r"shadow.worker_cpu_percent: 0 is not between 1 and 100 .in s.toml, line 7."
    with pytest.raises(ConfigError, match=expected):
        parse_config(ROUTES.format(value=0), "s.toml")
