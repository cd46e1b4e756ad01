"""Learned noise: templates, the Fisher test, and the real-vs-noise call."""

from __future__ import annotations

import math
import random

import pytest

from strangler_proxy.shadow.noise import (
    NOISE,
    REAL,
    SELF,
    SERVICE,
    UNLEARNED,
    NoiseModel,
    derive_template,
    fisher_greater,
    template_for,
)


@pytest.mark.parametrize(("path", "template"), [
    ("/api/products/42/", "/api/products/{id}/"),
    ("/api/orders/9f1c4a1e-1b2c-4d5e-8f90-0123456789ab/items/3", "/api/orders/{id}/items/{id}"),
    ("/api/x/deadbeefdeadbeef00/", "/api/x/{id}/"),
    ("/api/products/shoes/", "/api/products/shoes/"),
    ("/", "/"),
])
def test_templates_are_derived_from_raw_paths(path: str, template: str) -> None:
    assert derive_template(path) == template


def test_route_template_with_variables_wins() -> None:
    assert template_for("/p/{pk}/", "/p/1/") == "/p/{pk}/"
    assert template_for("/p/", "/p/1/") == "/p/{id}/"


def _brute_force_fisher(a: int, n1: int, c: int, n2: int) -> float:
    total, k = n1 + n2, a + c
    denom = math.comb(total, n1)
    return sum(math.comb(k, x) * math.comb(total - k, n1 - x)
               for x in range(a, min(k, n1) + 1)) / denom


@pytest.mark.parametrize(("a", "n1", "c", "n2"), [
    (3, 10, 0, 10), (5, 5, 1, 20), (0, 4, 2, 4), (7, 30, 6, 30), (1, 1, 0, 0), (2, 9, 9, 9)])
def test_fisher_matches_the_exact_sum(a: int, n1: int, c: int, n2: int) -> None:
    assert fisher_greater(a, n1, c, n2) == pytest.approx(_brute_force_fisher(a, n1, c, n2))


def test_fisher_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError, match="out of range"):
        fisher_greater(5, 3, 0, 3)


def test_noise_needs_the_monolith_to_vary_there() -> None:
    model = NoiseModel()
    for _ in range(3):
        model.observe("/t", SELF, [])
        model.observe("/t", SERVICE, [("$.price", "value")])
    # the monolith never varies on price: a real difference even on three samples
    assert model.verdict("/t", "$.price", "value") == REAL


def test_no_self_samples_means_unlearned_and_not_noise() -> None:
    model = NoiseModel()
    model.observe("/t", SERVICE, [("$.at", "value")])
    assert model.verdict("/t", "$.at", "value") == UNLEARNED
    assert not model.is_noise("/t", "$.at", "value")


def test_service_differing_much_more_often_than_the_monolith_is_real() -> None:
    model = NoiseModel()
    for i in range(60):
        model.observe("/t", SELF, [("$.count", "value")] if i % 20 == 0 else [])
        model.observe("/t", SERVICE, [("$.count", "value")] if i % 2 == 0 else [])
    ev = model.evidence("/t", "$.count", "value")
    assert (ev.self_diffs, ev.service_diffs, ev.verdict) == (3, 30, REAL)
    assert ev.p_value < 0.001


def test_a_type_change_is_counted_apart_from_value_noise() -> None:
    model = NoiseModel()
    for _ in range(20):
        model.observe("/t", SELF, [("$.at", "value")])
        model.observe("/t", SERVICE, [("$.at", "type")])
    assert model.verdict("/t", "$.at", "type") == REAL
    assert model.verdict("/t", "$.at", "value") == NOISE


def test_templates_keep_statistics_apart() -> None:
    model = NoiseModel()
    for _ in range(20):
        model.observe("/a", SELF, [("$.x", "value")])
        model.observe("/a", SERVICE, [("$.x", "value")])
        model.observe("/b", SELF, [])
        model.observe("/b", SERVICE, [("$.x", "value")])
    assert model.verdict("/a", "$.x", "value") == NOISE
    assert model.verdict("/b", "$.x", "value") == REAL


def test_filter_quality_on_generated_traffic() -> None:
    # given noisy fields varying at the same rate on both sides and one injected real diff
    rng = random.Random(7)
    model = NoiseModel()
    noisy = {"$.served_at": 1.0, "$.request_id": 1.0, "$.cache_age": 0.3}
    for _ in range(200):
        for source in (SELF, SERVICE):
            diffs = [(p, "value") for p, rate in noisy.items() if rng.random() < rate]
            if source == SERVICE and rng.random() < 0.1:
                diffs.append(("$.price", "value"))
            model.observe("/t", source, diffs)
    # then every noisy field is noise and the injected one is real
    assert all(model.is_noise("/t", p, "value") for p in noisy)
    assert model.verdict("/t", "$.price", "value") == REAL
