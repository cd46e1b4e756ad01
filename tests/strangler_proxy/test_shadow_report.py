"""`strangler shadow report` and `export`: the JSON shape, noise, latency, drops, exports."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from shadow_testkit import monolith_route, routes_toml

from strangler.cli import cli
from strangler_proxy.config import parse_config
from strangler_proxy.shadow import DiffRecord, open_store
from strangler_proxy.shadow.report import ReportError, build_report, parse_since

CONFIG = routes_toml("diffs.sqlite3", gate=(10, 0.8),
                     route='compare = { ignore = ["served_at"] }',
                     more=monolith_route("legacy", "/legacy/"))


def rec(verdict: str, diffs: tuple[tuple[str, str], ...] = (), kind: str = "service",
        path: str = "/api/products/1/", ms: tuple[float, float] = (10.0, 12.0),
        **kw: object) -> DiffRecord:
    return DiffRecord(
        route="products", template="/api/products/{id}/", method="GET", path=path,
        verdict=verdict, monolith_status=200, service_status=200, kind=kind,
        differences=tuple({"path": p, "kind": k, "monolith": "m", "service": "s"}
                          for p, k in diffs),
        monolith_ms=ms[0], service_ms=ms[1], **kw)  # type: ignore[arg-type]


@pytest.fixture
def routes_file(tmp_path: Path) -> Path:
    path = tmp_path / "strangler.toml"
    path.write_text(CONFIG)
    store = open_store(str(tmp_path / "diffs.sqlite3"))
    try:
        records = [rec("match", ms=(float(i), float(i) + 5)) for i in range(1, 21)]
        records += [rec("mismatch", (("$.items[0].price", "value"),),
                        path=f"/api/products/{i}/") for i in range(3)]
        records += [rec("mismatch", (("$.etag", "value"),)) for _ in range(5)]
        records += [rec("mismatch", (("$.etag", "value"),), kind="self") for _ in range(5)]
        records += [rec("mismatch", (("$.price", "value"),), path="/api/products/7/",
                        request_headers=(("Accept", "application/json"),),
                        monolith_headers=(("Content-Type", "application/json"),),
                        monolith_body=b'{"price": "9.50"}', service_body=b'{"price": 9.5}')]
        records += [rec("error", (("response", "error"),), ms=(3.0, 5000.0), error="timeout")]
        store.add(records)
        store.add_counts({("products", "dropped_queue_full"): 4,
                          ("products", "skipped_unsafe_method"): 2})
    finally:
        store.close()
    return path


def test_report_json_has_the_documented_shape(routes_file: Path) -> None:
    result = CliRunner().invoke(cli, ["shadow", "report", "--config", str(routes_file),
                                      "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [r["name"] for r in data["routes"]] == ["products"]  # monolith-only routes left out
    route = data["routes"][0]
    # 30 service comparisons: 20 matches + 5 etag (noise) + 3 price + 1 price + 1 error
    assert route["compared"] == 30
    assert route["matched"] == 25
    assert route["match_rate"] == pytest.approx(25 / 30, abs=1e-6)
    assert route["raw_match_rate"] == pytest.approx(20 / 30, abs=1e-6)
    low, high = route["match_rate_ci"]
    assert low < 25 / 30 < high
    assert route["errors"] == 1
    top = route["differences"][0]
    assert (top["path"], top["kind"], top["count"]) == ("$.items[*].price", "value", 3)
    assert top["example"]["path"] == "$.items[0].price"
    assert {"template", "noise"} <= top.keys()
    etag = next(d for d in route["differences"] if d["path"] == "$.etag")
    assert etag["noise"]["verdict"] == "noise"
    assert route["dropped"] == {"queue_full": 4}
    assert route["skipped"] == {"unsafe_method": 2}
    assert route["latency_ms"]["monolith"]["p50"] is not None
    lat = route["latency_ms"]
    assert lat["delta"]["p50"] == pytest.approx(lat["service"]["p50"] - lat["monolith"]["p50"])
    assert lat["service"]["p99"] < 5000.0  # the timed-out exchange is not a latency sample
    assert route["needed_for_gate"] > 0


def test_report_for_people_names_the_top_difference(routes_file: Path) -> None:
    result = CliRunner().invoke(cli, ["shadow", "report", "--config", str(routes_file),
                                      "--route", "products"])
    assert result.exit_code == 0, result.output
    assert "$.items[*].price" in result.output
    assert "gate needs" in result.output


def test_unknown_route_is_one_clear_error(routes_file: Path) -> None:
    config = parse_config(CONFIG, str(routes_file))
    store = open_store(str(routes_file.parent / "diffs.sqlite3"))
    try:
        with pytest.raises(ReportError, match="'nope'.*routes: products, legacy"):
            build_report(config, store, "nope")
    finally:
        store.close()


def test_since_filters_and_bad_since_is_refused(routes_file: Path) -> None:
    result = CliRunner().invoke(cli, ["shadow", "report", "--config", str(routes_file),
                                      "--json", "--since", "2999-01-01"])
    assert json.loads(result.output)["routes"][0]["compared"] == 0
    with pytest.raises(ReportError, match="--since 'yesterday'"):
        parse_since("yesterday")


class _Answers(BaseHTTPRequestHandler):
    price: object = "9.50"

    def do_GET(self) -> None:
        body = json.dumps({"price": self.price}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answering_server() -> Iterator[tuple[str, type[_Answers]]]:
    handler = type("H", (_Answers,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_exported_cases_pass_on_a_monolith_like_service_and_fail_otherwise(
        routes_file: Path, tmp_path: Path,
        answering_server: tuple[str, type[_Answers]]) -> None:
    # given the exported regression cases of the route
    out = tmp_path / "exported"
    result = CliRunner().invoke(cli, ["shadow", "export", "--config", str(routes_file),
                                      "--route", "products", "--out", str(out)])
    assert result.exit_code == 0, result.output
    test_file = next(out.glob("test_shadow_*.py"))
    data = json.loads(next(out.glob("shadow_cases_*.json")).read_text())
    assert any(c["path"] == "/api/products/7/" for c in data["cases"])
    url, handler = answering_server

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:django",
             "-k", "products/7/", str(test_file), "-o", "addopts="],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
            env={"STRANGLER_SERVICE_URL": url, "PATH": "/usr/bin:/bin"})

    # when the service answers like the monolith, then the case passes
    handler.price = "9.50"
    passed = run()
    assert passed.returncode == 0, passed.stdout + passed.stderr
    # when it answers like the broken service did, then the case fails with the difference
    handler.price = 9.5
    failed = run()
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "$.price (type)" in failed.stdout
