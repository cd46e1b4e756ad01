"""What shadow traffic found, per route: the data behind ``strangler shadow report``.

:func:`summarize_route` is pure: records and counters in, a JSON-ready summary out. Learned
noise (:mod:`strangler_proxy.shadow.noise`) is applied here, per endpoint template: an exchange
whose every difference is noise counts as a match, and the noise is listed with its
evidence rather than hidden. The gate reads the same numbers through :func:`route_evidence`.

The JSON form (``--json``)::

    {"schema_version": 1, "generated_at": "...", "store": "...",
     "gate": {"min_compared": N, "min_match_rate": R},
     "routes": [{"name", "mode", "target", "compared", "matched", "match_rate",
                 "match_rate_ci": [low, high], "raw_match_rate", "errors",
                 "differences": [{"path", "kind", "count", "template", "example", "noise"}],
                 "latency_ms": {"monolith": {p50, p95, p99}, "service": {...},
                                "delta": {...}},
                 "dropped": {...}, "skipped": {...}, "noise_samples", "needed_for_gate"}]}
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from strangler_proxy.config import GateSettings, ProxyConfig, Route
from strangler_proxy.errors import ProxyError
from strangler_proxy.shadow.evidence import (
    build_noise_model,
    effective_verdict,
)
from strangler_proxy.shadow.gate import needed_matches, wilson_interval
from strangler_proxy.shadow.noise import NOISE, NoiseModel
from strangler_proxy.shadow.rules import generalize
from strangler_proxy.shadow.store import DiffRecord, DiffStore
from strangler_proxy.write_atomic import write_atomic

REPORT_SCHEMA_VERSION: Final = 1
TOP_DIFFERENCES: Final = 20
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class ReportError(ProxyError):
    """The report cannot be made as asked (unknown route, unreadable --since)."""


def parse_since(text: str | None, now: float | None = None) -> float | None:
    """A start time from ``30m``/``2h``/``7d`` (ago) or an ISO-8601 date or time (UTC if naive).

    >>> parse_since("2h", now=10_000.0)
    2800.0
    >>> parse_since("2024-01-02")
    1704153600.0
    """
    if not text:
        return None
    match = _DURATION.match(text)
    if match:
        current = time.time() if now is None else now
        return current - float(match.group(1)) * _UNIT[match.group(2)]
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ReportError(f"--since {text!r}: use a duration such as 30m, 2h, 7d or an "
                          "ISO-8601 time such as 2024-05-01T10:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99 by nearest rank (None when there are no values).

    >>> percentiles([float(x) for x in range(1, 101)])
    {'p50': 50.0, 'p95': 95.0, 'p99': 99.0}
    """
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    ordered = sorted(values)
    return {f"p{q}": round(ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)], 3)
            for q in (50, 95, 99)}


def _differences(service: Sequence[DiffRecord], model: NoiseModel,
                 top: int) -> list[dict[str, Any]]:
    counts: Counter[tuple[str, str, str]] = Counter()
    examples: dict[tuple[str, str, str], dict[str, Any]] = {}
    for record in service:
        seen: set[tuple[str, str, str]] = set()
        for diff in record.differences:
            key = (record.template, generalize(str(diff.get("path", ""))),
                   str(diff.get("kind", "")))
            if key in seen:
                continue
            seen.add(key)
            counts[key] += 1
            examples.setdefault(key, {
                "exchange_id": record.id, "request": f"{record.method} {record.path}"
                + (f"?{record.query}" if record.query else ""), "path": diff.get("path"),
                "monolith": diff.get("monolith"), "service": diff.get("service")})
    rows: list[dict[str, Any]] = []
    for key, count in counts.items():
        evidence = model.evidence(*key)
        rows.append({"path": key[1], "kind": key[2], "count": count, "template": key[0],
                     "example": examples[key], "noise": evidence.to_dict()})
    rows.sort(key=lambda r: (r["noise"]["verdict"] == NOISE, -r["count"], r["path"]))
    return rows[:top]


def summarize_route(route: Route, records: Sequence[DiffRecord],
                    counters: Mapping[str, int], gate: GateSettings,
                    top: int = TOP_DIFFERENCES) -> dict[str, Any]:
    """The report entry of one route from its records and counters."""
    model = build_noise_model(records)
    service = [r for r in records if r.kind != "self"]
    verdicts = Counter(effective_verdict(r, model) for r in service)
    compared, matched = len(service), verdicts["match"]
    raw = sum(1 for r in service if r.verdict == "match")
    low, high = wilson_interval(matched, compared)
    ok = [r for r in service if not r.error]
    mono = percentiles([r.monolith_ms for r in ok])
    serv = percentiles([r.service_ms for r in ok])
    delta = {q: (None if mono[q] is None or serv[q] is None else
                 round(float(serv[q] or 0) - float(mono[q] or 0), 3)) for q in mono}
    return {
        "name": getattr(route, "name", str(route)),
        "mode": getattr(route, "mode", None), "target": getattr(route, "target", None),
        "compared": compared, "matched": matched,
        "match_rate": round(matched / compared, 6) if compared else 0.0,
        "match_rate_ci": [round(low, 6), round(high, 6)],
        "raw_match_rate": round(raw / compared, 6) if compared else 0.0,
        "errors": verdicts["error"],
        "differences": _differences(service, model, top),
        "latency_ms": {"monolith": mono, "service": serv, "delta": delta},
        "dropped": {k.removeprefix("dropped_"): v for k, v in sorted(counters.items())
                    if k.startswith("dropped_")},
        "skipped": {k.removeprefix("skipped_"): v for k, v in sorted(counters.items())
                    if k.startswith("skipped_")},
        "noise_samples": len(records) - compared,
        "needed_for_gate": needed_matches(matched, compared, gate.min_compared,
                                          gate.min_match_rate),
    }


def build_report(config: ProxyConfig, store: DiffStore, route_name: str | None = None,
                 since: float | None = None) -> dict[str, Any]:
    """The whole report: every route that has a service target (or the one asked for)."""
    routes = [r for r in config.routes if route_name is None or r.name == route_name]
    if route_name is not None and not routes:
        names = ", ".join(r.name for r in config.routes) or "none"
        raise ReportError(f"--route {route_name!r}: no such route in {config.source}; "
                          f"routes: {names}")
    if route_name is None:
        routes = [r for r in routes if r.target != "monolith"]
    counters: dict[str, dict[str, int]] = defaultdict(dict)
    for (name, counter), value in store.counts().items():
        counters[name][counter] = value
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "store": store.location,
        "since": None if since is None else datetime.fromtimestamp(since, UTC).isoformat(),
        "gate": {"min_compared": config.gate.min_compared,
                 "min_match_rate": config.gate.min_match_rate},
        "routes": [summarize_route(r, store.records(route=r.name, since=since),
                                   counters.get(r.name, {}), config.gate) for r in routes],
    }




# -- export as pytest regression cases -----------------------------------------------------------

_SKIP_REQUEST_HEADERS: Final = frozenset({"host", "content-length", "connection",
                                          "accept-encoding", "x-strangler-shadow"})
_SKIP_RESPONSE_HEADERS: Final = frozenset({"content-encoding", "content-length",
                                           "transfer-encoding", "connection"})


def _body_field(body: bytes) -> dict[str, Any]:
    try:
        return {"text": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(body).decode("ascii")}


def regression_cases(records: Iterable[DiffRecord], limit: int = 50) -> list[dict[str, Any]]:
    """One case per distinct mismatched request: the request and the monolith's answer.

    Redacted headers are left out (the service's suite supplies its own credentials).
    """
    cases: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str]] = set()
    for record in records:
        key = (record.method, record.path, record.query)
        if record.verdict != "mismatch" or record.kind == "self" or key in seen:
            continue
        seen.add(key)
        cases.append({
            "id": f"{record.method} {record.path}" + (f"?{record.query}" if record.query
                                                      else "") + f" #{record.id}",
            "method": record.method, "path": record.path, "query": record.query,
            "headers": [[k, v] for k, v in record.request_headers
                        if k.lower() not in _SKIP_REQUEST_HEADERS and v != "[redacted]"],
            "body": _body_field(record.request_body),
            "expected": {"status": record.monolith_status,
                         "headers": [[k, v] for k, v in record.monolith_headers
                                     if k.lower() not in _SKIP_RESPONSE_HEADERS],
                         "body": _body_field(record.monolith_body)},
            "seen_differences": list(record.differences),
        })
        if len(cases) >= limit:
            break
    return cases


def compare_rules_data(route: Route) -> dict[str, Any]:
    """A route's compare table as plain JSON data (for the exported test)."""
    rules = route.compare
    return {"ignore": list(rules.ignore), "headers": list(rules.headers),
            "tolerance": dict(rules.tolerance), "unordered": dict(rules.unordered),
            "formats": dict(rules.formats)}


REGRESSION_TEST_TEMPLATE: Final = '''\
"""Regression cases for route {route!r}, exported by `strangler shadow export`.

Each case is a request on which the service once answered unlike the monolith, with the
monolith's answer as the expectation; the comparison uses the route's compare rules, so
known noise stays ignored. Run against a live service:

    STRANGLER_SERVICE_URL=http://127.0.0.1:9000 pytest {test_file}

Writes are sent with a shadow marker signed with $STRANGLER_SHADOW_SECRET (the service's
secret), so that the service rolls them back; without it they are real writes.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import httpx
import pytest

from strangler_proxy.shadow.compare import compare
from strangler_proxy.shadow.rules import compile_rules
from strangler_proxy.exchange import RecordedResponse
from strangler_proxy.shadow_marker import sign_marker

DATA = json.loads((Path(__file__).parent / {data_file!r}).read_text(encoding="utf-8"))
RULES = compile_rules(DATA["compare"])
SKIP_HEADERS = {{"content-encoding", "content-length", "transfer-encoding", "connection"}}


def _body(field: dict[str, str]) -> bytes:
    if "base64" in field:
        return base64.b64decode(field["base64"])
    return field["text"].encode("utf-8")


@pytest.fixture(scope="module")
def service_url() -> str:
    url = os.environ.get("STRANGLER_SERVICE_URL", "")
    if not url:
        pytest.skip("set STRANGLER_SERVICE_URL to the service's base URL")
    return url.rstrip("/")


@pytest.mark.parametrize("case", DATA["cases"], ids=[c["id"] for c in DATA["cases"]])
def test_service_answers_like_the_monolith(case: dict, service_url: str) -> None:
    # given the request the monolith answered
    url = service_url + case["path"] + ("?" + case["query"] if case["query"] else "")
    # signed like the proxy's copies, so that the service rolls back the writes
    secret = os.environ.get("STRANGLER_SHADOW_SECRET", "")
    marker = sign_marker(secret, case["method"], case["path"]) if secret else "unsigned"
    headers = [*case["headers"], ["X-Strangler-Shadow", marker]]
    # when the service gets it
    answer = httpx.request(case["method"], url, headers=headers, content=_body(case["body"]),
                           timeout=10.0, follow_redirects=False)
    # then it answers alike under the route's rules
    expected = RecordedResponse(case["expected"]["status"],
                                tuple(map(tuple, case["expected"]["headers"])),
                                _body(case["expected"]["body"]))
    actual = RecordedResponse(answer.status_code,
                              tuple((k, v) for k, v in answer.headers.multi_items()
                                    if k.lower() not in SKIP_HEADERS), answer.content)
    result = compare(expected, actual, RULES)
    assert result.matched, "\\n".join(
        f"{{d.path}} ({{d.kind}}): monolith {{d.monolith_value!r}}, "
        f"service {{d.service_value!r}}" for d in result.differences)
'''


def export_regressions(route: Route, records: Iterable[DiffRecord], out_dir: str,
                       limit: int = 50) -> tuple[str, str, int]:
    """Write ``test_shadow_<route>.py`` and its cases JSON into ``out_dir`` (atomically).

    Returns (test file, data file, number of cases).
    """
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", route.name).strip("_") or "route"
    directory = Path(out_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"--out {directory}: cannot create it ({exc.strerror}); pick a "
                          "writable directory") from None
    test_file = directory / f"test_shadow_{slug}.py"
    data_file = directory / f"shadow_cases_{slug}.json"
    cases = regression_cases(records, limit)
    data = {"route": route.name, "compare": compare_rules_data(route), "cases": cases}
    for path, text in (
            (data_file, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"),
            (test_file, REGRESSION_TEST_TEMPLATE.format(route=route.name,
                                                        test_file=test_file.name,
                                                        data_file=data_file.name))):
        _write_atomically(path, text)
    return str(test_file), str(data_file), len(cases)


def _write_atomically(path: Path, text: str) -> None:
    try:
        write_atomic(path, text)
    except OSError as exc:
        raise ReportError(f"cannot write {path} ({exc.strerror}); pick a writable --out "
                          "directory") from None
