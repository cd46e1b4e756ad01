"""The rollout's latency check on few requests: one stall never decides a step."""

from __future__ import annotations

import doctest

from strangler_proxy import rollout_checks
from strangler_proxy.live_evidence import SideCounts, Window
from strangler_proxy.metrics import LATENCY_BUCKETS
from strangler_proxy.rollout_checks import check_error_rate, check_latency
from strangler_proxy.rollout_plan import ErrorRateCheck, LatencyCheck


def side(*seconds: float) -> SideCounts:
    """A side whose requests took ``seconds``, binned as the proxy's histogram bins them."""
    bins = [0] * (len(LATENCY_BUCKETS) + 1)
    for value in seconds:
        bins[next((i for i, b in enumerate(LATENCY_BUCKETS) if value <= b),
                  len(LATENCY_BUCKETS))] += 1
    return SideCounts(len(seconds), 0, (len(seconds), 0, 0, 0), tuple(bins))


CHECK = LatencyCheck(max_ratio=5, slack_ms=200)


def test_one_stall_in_five_requests_does_not_roll_back_but_three_do() -> None:
    # given five fast monolith requests and five service requests, one of them stalled 241 ms
    monolith = side(*[0.002] * 5)
    one_stall = check_latency(Window("r", 10, monolith, side(0.241, *[0.002] * 4)), CHECK, 5)
    # then the check judges p60 of five (the slowest two left out) and passes
    assert one_stall.passed, one_stall.message
    assert one_stall.numbers["service_quantile"] == 0.6
    assert one_stall.message.startswith("service p60 ")
    # and with three of five stalled it fails: that is the service, not a stall
    three = check_latency(Window("r", 10, monolith, side(0.241, 0.3, 0.4, 0.002, 0.002)),
                          CHECK, 5)
    assert three.passed is False, three.message


def test_from_200_requests_it_is_the_p99() -> None:
    # given 300 requests a side, 4 of the service's (1.3 %) slow, 2 s each
    monolith = side(*[0.002] * 300)
    service = side(*[2.0] * 4, *[0.002] * 296)
    result = check_latency(Window("r", 10, monolith, service), CHECK, 100)
    assert result.numbers["service_quantile"] == 0.99
    assert result.message.startswith("service p99 ")
    # then the p99 is among the slow ones, past 5 × 2.5 ms + 200 ms
    assert result.passed is False, result.message
    # and 3 slow of 300 (1 %, what p99 leaves out) pass
    fine = side(*[2.0] * 3, *[0.002] * 297)
    assert check_latency(Window("r", 10, monolith, fine), CHECK, 100).passed


def test_the_doctests_of_rollout_checks_pass() -> None:
    assert doctest.testmod(rollout_checks).failed == 0


def failing(requests: int, errors: int) -> SideCounts:
    """A side with ``errors`` 5xx answers among ``requests``."""
    bins = [0] * (len(LATENCY_BUCKETS) + 1)
    bins[0] = requests
    return SideCounts(requests, errors, (requests - errors, 0, 0, errors), tuple(bins))


def test_one_early_error_is_reported_not_acted_on_three_are() -> None:
    # given a canary step's first requests: the service's only answer so far is a 5xx
    monolith = failing(2, 0)
    first = check_error_rate(Window("r", 10, monolith, failing(1, 1)), ErrorRateCheck())
    # then the bound (+7 %) is over the allowance but one error is not acted on
    assert first.numbers["lower_bound"] > 0.01
    assert first.passed, first.message
    assert "not acted on: 1 of the 3 errors" in first.message
    # and a service that keeps failing is rolled back at its third error
    third = check_error_rate(Window("r", 10, monolith, failing(3, 3)), ErrorRateCheck())
    assert third.passed is False, third.message
    # and min_errors = 1 acts on the first, as before
    strict = check_error_rate(Window("r", 10, monolith, failing(1, 1)),
                              ErrorRateCheck(min_errors=1))
    assert strict.passed is False, strict.message


def test_many_errors_in_a_large_window_still_fail_and_few_still_pass() -> None:
    # 12 of 13 failing against 0 of 118 (the docs' example) fails
    bad = check_error_rate(Window("r", 10, failing(118, 0), failing(13, 12)), ErrorRateCheck())
    assert bad.passed is False, bad.message
    # and 3 errors in 1,000 against 2 in 1,000 pass on the statistics, not on min_errors
    fine = check_error_rate(Window("r", 10, failing(1000, 2), failing(1000, 3)),
                            ErrorRateCheck())
    assert fine.passed, fine.message
    assert "not acted on" not in fine.message
