"""A route's shadow evidence after learned noise: what the gate counts and the report shows.

Split from ``report.py`` so that the gate (which the report also uses for its statistics) can
read the evidence without importing the report.
"""

from __future__ import annotations

from collections.abc import Iterable

from strangler_proxy.shadow.noise import SELF, SERVICE, NoiseModel
from strangler_proxy.shadow.rules import generalize
from strangler_proxy.shadow.store import DiffRecord, DiffStore


def diff_keys(record: DiffRecord) -> list[tuple[str, str]]:
    """Each difference of a record as (generalized path, kind), the noise model's key."""
    return [(generalize(str(d.get("path", ""))), str(d.get("kind", "")))
            for d in record.differences]


def build_noise_model(records: Iterable[DiffRecord]) -> NoiseModel:
    """Feed service and self comparisons (not errors) into a noise model."""
    model = NoiseModel()
    for record in records:
        if record.verdict == "error":
            continue
        model.observe(record.template, SELF if record.kind == "self" else SERVICE,
                      diff_keys(record))
    return model


def effective_verdict(record: DiffRecord, model: NoiseModel) -> str:
    """``match`` when every difference is learned noise, else the stored verdict."""
    if record.verdict != "mismatch":
        return record.verdict
    if all(model.is_noise(record.template, path, kind) for path, kind in diff_keys(record)):
        return "match"
    return "mismatch"


def route_evidence(store: DiffStore, route_name: str,
                   since: float | None = None) -> tuple[int, int]:
    """(compared, matched after learned noise) for one route, as the gate counts them."""
    records = store.records(route=route_name, since=since)
    model = build_noise_model(records)
    service = [r for r in records if r.kind != "self"]
    return len(service), sum(1 for r in service if effective_verdict(r, model) == "match")
