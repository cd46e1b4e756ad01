"""Header rules as pure functions, and the doctests of the proxy's pure modules."""

from __future__ import annotations

import doctest
import importlib.util
import ipaddress
import json
import sys
from types import ModuleType

import pytest

from strangler_proxy import config, headers, native, routing
from strangler_proxy.headers import (
    client_address,
    connection_tokens_of,
    forwarded_headers,
    new_request_id,
    request_head,
    request_id_of,
    rewrite_location,
)
from strangler_proxy.metrics import Metrics


def _from_source(module: ModuleType) -> ModuleType:
    """The module as its .py runs it: doctest cannot see into a compiled one (native.py)."""
    if module.__name__ not in native.MODULES or not (module.__file__ or "").endswith(".so"):
        return module
    name = f"{module.__name__}_doctest_source"
    spec = importlib.util.spec_from_file_location(name, native.source_path(module.__name__))
    assert spec is not None
    assert spec.loader is not None
    source = importlib.util.module_from_spec(spec)
    sys.modules[name] = source  # dataclasses look their module up while it executes
    try:
        spec.loader.exec_module(source)
    finally:
        del sys.modules[name]
    return source


@pytest.mark.parametrize("module", [config, headers, routing])
def test_doctests_pass(module: ModuleType) -> None:
    result = doctest.testmod(_from_source(module))
    assert result.attempted > 0
    assert result.failed == 0


def test_request_head_drops_hop_by_hop_forwarding_and_connection_named_headers() -> None:
    raw = [(b"Host", b"shop"), (b"Connection", b"keep-alive, X-Hop"), (b"X-Hop", b"1"),
           (b"Keep-Alive", b"5"), (b"X-Forwarded-For", b"6.6.6.6"), (b"Expect", b"100-continue"),
           (b"Content-Length", b"3"), (b"Via", b"1.0 evil"), (b"Accept", b"*/*")]
    lowers = [n.lower() for n, _ in raw]
    head = request_head(b"POST / HTTP/1.1\r\n", raw, lowers,
                        connection_tokens_of(b"keep-alive, X-Hop"), False, b"T: 1\r\n\r\n")
    assert head == b"POST / HTTP/1.1\r\nHost: shop\r\nAccept: */*\r\nT: 1\r\n\r\n"


def test_request_head_can_replace_host() -> None:
    head = request_head(b"GET / HTTP/1.1\r\nHost: up:1\r\n", [(b"Host", b"shop")], [b"host"],
                        frozenset(), True, b"\r\n")
    assert head == b"GET / HTTP/1.1\r\nHost: up:1\r\n\r\n"


def test_forwarded_headers_trusted_extends_via_and_forwarded() -> None:
    got = dict(forwarded_headers([(b"Via", b"1.0 lb"), (b"Forwarded", b"for=1.2.3.4"),
                                  (b"X-Forwarded-Host", b"outer")], "10.0.0.2", True, b"inner"))
    assert got[b"Via"] == b"1.0 lb, 1.1 strangler"
    assert got[b"Forwarded"] == b"for=1.2.3.4"
    assert got[b"X-Forwarded-Host"] == b"outer"
    assert got[b"X-Forwarded-For"] == b"10.0.0.2"


def test_client_address_skips_trusted_hops() -> None:
    nets = [ipaddress.ip_network("10.0.0.0/8")]
    assert client_address("10.0.0.1", b"9.9.9.9, 1.2.3.4, 10.1.1.1", True, nets) == "1.2.3.4"
    assert client_address("10.0.0.1", b"10.2.2.2", True, nets) == "10.2.2.2"


def test_request_ids_are_unique_and_bad_ones_replaced() -> None:
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert request_id_of(b"x" * 201) != "x" * 201
    assert request_id_of(None)


def test_location_rewrite_only_for_upstream_origins() -> None:
    origins = [b"http://127.0.0.1:8001"]
    assert rewrite_location(b"http://127.0.0.1:8001", origins, b"http://shop") == b"http://shop"
    assert rewrite_location(b"http://127.0.0.1:80011/x", origins, b"http://s") == \
        b"http://127.0.0.1:80011/x"
    assert rewrite_location(b"https://other/x", origins, b"http://s") == b"https://other/x"


def test_metrics_render_counters_and_cumulative_histograms() -> None:
    metrics = Metrics()
    metrics.observe("catalog", "catalog", 200, 0.0007)
    metrics.observe("catalog", "catalog", 200, 0.3)
    metrics.observe("catalog", "catalog", 502, 20.0)
    metrics.fallback("catalog", "connect")
    text = metrics.render()
    assert 'strangler_requests_total{route="catalog",target="catalog",status="200"} 2' in text
    assert ('strangler_request_duration_seconds_bucket{route="catalog",target="catalog",'
            'le="0.001"} 1') in text
    assert ('strangler_request_duration_seconds_bucket{route="catalog",target="catalog",'
            'le="0.5"} 2') in text
    assert ('strangler_request_duration_seconds_bucket{route="catalog",target="catalog",'
            'le="+Inf"} 3') in text
    assert 'strangler_fallbacks_total{route="catalog",reason="connect"} 1' in text


def test_metrics_snapshots_from_other_workers_add_up() -> None:
    one, two = Metrics(), Metrics()
    one.observe("catalog", "catalog", 200, 0.0007)
    two.observe("catalog", "catalog", 200, 0.3)
    two.observe("default", "monolith", 404, 0.002)
    two.upstream_error("catalog", "timeout")
    two.reload("ok")
    total = Metrics()
    for worker in (one, two):
        total.absorb(json.loads(json.dumps(worker.snapshot())))  # as published on disk
    text = total.render()
    assert 'strangler_requests_total{route="catalog",target="catalog",status="200"} 2' in text
    assert 'strangler_requests_total{route="default",target="monolith",status="404"} 1' in text
    assert ('strangler_request_duration_seconds_sum{route="catalog",target="catalog"} '
            '0.300700') in text
    assert 'strangler_upstream_errors_total{upstream="catalog",kind="timeout"} 1' in text
    assert 'strangler_reloads_total{result="ok"} 1' in text


def test_a_request_slower_than_the_last_bucket_does_not_skew_the_sum() -> None:
    metrics = Metrics()
    metrics.observe("r", "monolith", 200, 20.0)
    text = metrics.render()
    assert 'strangler_request_duration_seconds_sum{route="r",target="monolith"} 20.000000' \
        in text
    assert 'strangler_request_duration_seconds_count{route="r",target="monolith"} 1' in text


def test_request_ids_count_in_hex_across_the_cached_blocks() -> None:
    # the counter's digits are formatted once per 256 ids: crossing blocks must not skip,
    # repeat or mis-format one
    from strangler_proxy.headers import new_request_id_bytes  # noqa: PLC0415

    ids = [new_request_id_bytes() for _ in range(700)]
    prefix, _, first = ids[0].rpartition(b"-")
    start = int(first, 16)
    assert ids == [prefix + b"-%08x" % (start + k) for k in range(700)]
    assert len(first) == 8
    assert new_request_id().startswith(prefix.decode())
