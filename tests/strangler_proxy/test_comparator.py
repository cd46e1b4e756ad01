"""The standalone comparator (`strangler shadow serve`) live: our proxy and nginx send it copies.

The comparator runs as its own process, as in production; the monolith and the service are
real HTTP servers on 127.0.0.1; the diff store is PostgreSQL when STRANGLER_TEST_PG_URL (or
DATABASE_URL) is set (a schema of its own per test), SQLite otherwise; nginx is the system's
(`make sysdeps`). `strangler shadow report` and the gate then read what the comparator stored.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from proxy_harness import stop_process_group
from shadow_testkit import JsonServer, monolith_and_service, routes_toml

from strangler.cli import cli
from strangler_proxy.config import load_config
from strangler_proxy.shadow import open_config_store
from strangler_proxy.shadow.gate import check_promotion
from strangler_proxy.shadow.serve import (
    AUTH_HEADER,
    OFFERS_PATH,
    TOKEN_HEADER,
    TOKEN_PREFIX,
    batch_auth,
    mirror_token,
)
from strangler_proxy.shadow.sink import encode_frame
from strangler_proxy.shadow_marker import check_marker

SECRET = "comparator-test-secret"
SLOW_MACHINE_SECONDS = 20.0


def _pg_url() -> str | None:
    return os.environ.get("STRANGLER_TEST_PG_URL") or os.environ.get("DATABASE_URL")


@pytest.fixture
def store_url(tmp_path: Path) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema (dropped after), else SQLite."""
    url = _pg_url()
    if not url:
        yield str(tmp_path / "diffs.sqlite3")
        return
    import psycopg

    schema = f"cmp_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _routes(store: str, monolith: str, service: str, **shadow: object) -> str:
    settings: dict[str, object] = {"noise_percent": 0, "timeout": 2.0,
                                   "marker_secret": SECRET}
    settings.update(shadow)
    return routes_toml(store, monolith, service, shadow=settings, listen=True,
                       gate=(3, 0.4))  # 3/3 matches: 95% lower bound 43.9%


class Comparator:
    """`strangler shadow serve` as a process on a port from the OS."""

    def __init__(self, config: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and command
            [sys.executable, "-m", "strangler.cli", "shadow", "serve", "--config", str(config),
             "--listen", "127.0.0.1:0", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the announcement, or "" when it exited
        if "listening on" not in line:
            stop_process_group(self.proc)
            raise AssertionError(f"comparator did not start: {line!r}")
        self.url = line.split("listening on ")[1].split()[0]

    def close(self) -> str:
        stop_process_group(self.proc)
        return ""


@pytest.fixture
def comparator_of() -> Iterator[Any]:
    started: list[Comparator] = []

    def start(config: Path, *extra: str) -> Comparator:
        started.append(Comparator(config, *extra))
        return started[-1]

    yield start
    for comparator in started:
        comparator.close()


def _records(config: Path) -> list[Any]:
    store = open_config_store(load_config(config))
    try:
        return store.records(route="products")
    finally:
        store.close()


def _wait_records(config: Path, count: int, timeout: float = SLOW_MACHINE_SECONDS) -> list[Any]:
    deadline = time.monotonic() + timeout
    records = _records(config)
    while len(records) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        records = _records(config)
    return records


def _report(config: Path) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["shadow", "report", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return next(r for r in data["routes"] if r["name"] == "products")


def test_our_proxy_sends_copies_to_the_comparator_and_the_report_reads_them(
        tmp_path: Path, store_url: str, comparator_of: Any) -> None:
    from strangler_proxy.control import ProxyApp
    from strangler_proxy.edge import listen_socket
    from strangler_proxy.shadow.remote import RemoteSink

    baseline = JsonServer(price="9.50")  # a monolith instance that serves no client
    with monolith_and_service() as (monolith, service):
        # given a comparator that asks its own monolith instance for baselines, and a proxy
        # that sends it its copies (noise: every request)
        config = tmp_path / "strangler.toml"
        config.write_text(_routes(store_url, monolith.url, service.url, noise_percent=100,
                                  comparator_baseline_url=baseline.url))
        comparator = comparator_of(config)
        config.write_text(_routes(store_url, monolith.url, service.url, noise_percent=100,
                                  proxy_sends_to="comparator",
                                  comparator_url=comparator.url,
                                  comparator_baseline_url=baseline.url))

        async def main() -> list[dict[str, Any]]:
            app = ProxyApp(config, environ={})
            await app.start(proxy_sock=listen_socket("127.0.0.1:0"),
                            admin_sock=listen_socket("127.0.0.1:0"), watch=False)
            try:
                assert isinstance(app.sink, RemoteSink)
                async with httpx.AsyncClient(trust_env=False) as client:
                    # when clients ask for five products through the proxy
                    answers = [(await client.get(f"http://{app.proxy_address}/api/products/"
                                                 f"{i}/", headers={"X-Request-ID": f"rid-{i}"}))
                               .json() for i in range(5)]
                assert await app.sink.wait_idle(timeout=SLOW_MACHINE_SECONDS)
                return answers
            finally:
                await app.stop(grace=1.0)

        try:
            answers = asyncio.run(main())
        finally:
            baseline.close()
    # then the clients got the monolith's answers
    assert [a["price"] for a in answers] == ["9.50"] * 5
    # and the service got signed copies (from the comparator, with the proxy's secret)
    copies = [s for s in service.seen if s[1].startswith("/api/products/")]
    assert len(copies) == 5
    assert all(check_marker(s[2]["X-Strangler-Shadow"], SECRET, "GET", s[1]) == ""
               for s in copies)
    assert sorted(s[2]["X-Request-ID"] for s in copies) == [f"rid-{i}" for i in range(5)]
    # the proxy sent each GET as its request alone: the comparator asked its baseline instance
    # (shadow.comparator_baseline_url) for the baseline and again, for noise, each a signed
    # copy; the monolith that serves clients saw only their 5 requests
    asked = baseline.seen
    assert (len(monolith.seen), len(asked)) == (5, 10)
    assert not any("X-Strangler-Shadow" in s[2] for s in monolith.seen)
    assert all(check_marker(s[2]["X-Strangler-Shadow"], SECRET, "GET", s[1]) == ""
               for s in asked)
    # and the report reads the comparator's records: 5 compared, all differing in $.price
    route = _report(config)
    assert (route["compared"], route["matched"], route["noise_samples"]) == (5, 0, 5)
    assert route["differences"][0]["path"] == "$.price"
    # and the gate holds the promotion shut on that evidence
    decision = check_promotion(load_config(config), "products", "service")
    assert not decision.allowed


def test_nginx_mirrors_to_the_comparator_which_asks_the_monolith_itself(
        tmp_path: Path, store_url: str, comparator_of: Any) -> None:
    sys.path.insert(0, str(Path(__file__).parent / "export"))
    from engine_harness import exported_engine, need

    need("nginx")
    with monolith_and_service(service_price="9.50") as (monolith, service):
        # given a shadow route exported to nginx, mirroring to the comparator (token in the URL)
        config = tmp_path / "strangler.toml"
        config.write_text(_routes(store_url, monolith.url, service.url))
        comparator = comparator_of(config)
        url = f"{comparator.url}{TOKEN_PREFIX}{mirror_token(SECRET)}"
        with exported_engine("nginx", config, tmp_path / "nginx", comparator_url=url) as base:
            # when three clients ask nginx (and one POST, which is never mirrored)
            with httpx.Client(trust_env=False, timeout=10) as client:
                answers = [client.get(f"{base}/api/products/{i}/?q=1") for i in range(3)]
                client.post(f"{base}/api/products/9/", content=b"{}")
            records = _wait_records(config, 3)
    # then the clients got the monolith's answers, and the records are the three GETs
    assert all(a.status_code == 200 and a.json()["id"].startswith("/api/products/")
               for a in answers)
    assert sorted((r.method, r.path, r.query, r.verdict) for r in records) == [
        ("GET", f"/api/products/{i}/", "q=1", "match") for i in range(3)]
    # and the comparator asked the monolith itself: each GET reached it twice (nginx, us)
    gets = [s for s in monolith.seen if s[0] == "GET"]
    assert len(gets) == 6
    assert sum("X-Strangler-Shadow" in s[2] for s in gets) == 3
    # and the report and the gate read them as the proxy's own records
    route = _report(config)
    assert (route["compared"], route["matched"]) == (3, 3)
    assert check_promotion(load_config(config), "products", "service").allowed


def test_unsigned_batches_and_mirrors_without_the_token_are_refused(
        tmp_path: Path, comparator_of: Any) -> None:
    service = JsonServer()
    try:
        config = tmp_path / "strangler.toml"
        config.write_text(_routes(str(tmp_path / "diffs.sqlite3"), service.url, service.url))
        comparator = comparator_of(config)
        base = comparator.url
        frame = encode_frame(("counts", {("products", "accepted"): 1}))
        with httpx.Client(trust_env=False, timeout=10) as client:
            # a batch without auth, with a wrong secret, with a body that is not the signed one
            statuses = [client.post(base + OFFERS_PATH, content=frame).status_code,
                        client.post(base + OFFERS_PATH, content=frame, headers={
                            AUTH_HEADER: batch_auth("wrong", OFFERS_PATH, frame)}).status_code,
                        client.post(base + OFFERS_PATH, content=frame + b"x", headers={
                            AUTH_HEADER: batch_auth(SECRET, OFFERS_PATH, frame)}).status_code]
            # a mirror without a token, with a wrong one; then a good one of each
            statuses += [client.get(base + "/api/products/1/").status_code,
                         client.get(base + "/api/products/1/",
                                    headers={TOKEN_HEADER: mirror_token("x")}).status_code]
            # a signed batch that is not frames
            garbled = client.post(base + OFFERS_PATH, content=b"\x00\x00\x00\x09garbage!!",
                                  headers={AUTH_HEADER: batch_auth(
                                      SECRET, OFFERS_PATH, b"\x00\x00\x00\x09garbage!!")})
            good = [client.post(base + OFFERS_PATH, content=frame, headers={
                        AUTH_HEADER: batch_auth(SECRET, OFFERS_PATH, frame)}).status_code,
                    client.get(base + "/api/products/1/",
                               headers={TOKEN_HEADER: mirror_token(SECRET)}).status_code]
        assert statuses == [401] * 5
        assert garbled.status_code == 400
        assert "bad frame at byte 0" in garbled.text
        assert good == [204, 202]
        records = _wait_records(config, 1)
        assert [(r.path, r.verdict) for r in records] == [("/api/products/1/", "match")]
        assert service.seen[0][2].get("X-Strangler-Comparator-Token") is None  # not passed on
    finally:
        service.close()


def test_the_comparator_needs_a_secret_or_an_explicit_loopback_only_opt_out(
        tmp_path: Path, comparator_of: Any) -> None:
    config = tmp_path / "strangler.toml"
    config.write_text(routes_toml(tmp_path / "d.sqlite3"))
    # without a marker secret it refuses to start, in one line that names the fix
    result = subprocess.run([sys.executable, "-m", "strangler.cli", "shadow", "serve", "--config",
                             str(config), "--listen", "127.0.0.1:0"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "shadow.marker_secret" in result.stderr
    # off loopback, the opt-out is refused too
    result = subprocess.run([sys.executable, "-m", "strangler.cli", "shadow", "serve", "--config",
                             str(config), "--listen", "0.0.0.0:0", "--insecure-no-auth"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "bind 127.0.0.1" in result.stderr
    # on loopback it starts
    comparator_of(config, "--insecure-no-auth")


def test_a_comparator_that_is_down_costs_the_proxy_only_the_copies(tmp_path: Path) -> None:
    from strangler_proxy.control import ProxyApp
    from strangler_proxy.edge import listen_socket

    with monolith_and_service() as (monolith, service):
        config = tmp_path / "strangler.toml"
        config.write_text(_routes(str(tmp_path / "d.sqlite3"), monolith.url, service.url,
                                  proxy_sends_to="comparator",
                                  comparator_url="http://127.0.0.1:9"))

        async def main() -> tuple[list[int], str, float]:
            app = ProxyApp(config, environ={})
            began = time.perf_counter()
            await app.start(proxy_sock=listen_socket("127.0.0.1:0"),
                            admin_sock=listen_socket("127.0.0.1:0"), watch=False)
            try:
                async with httpx.AsyncClient(trust_env=False) as client:
                    statuses = [(await client.get(f"http://{app.proxy_address}/api/products/"
                                                  f"{i}/")).status_code for i in range(5)]
                return statuses, app.sink.prometheus_text(), time.perf_counter() - began
            finally:
                await app.stop(grace=1.0)

        statuses, metrics, elapsed = asyncio.run(main())
    assert statuses == [200] * 5
    assert 'event="dropped_comparator_down"} 5' in metrics
    assert elapsed < 5.0
    assert service.seen == []


def test_the_comparator_follows_the_routes_file_and_compares_only_shadow_routes(
        tmp_path: Path) -> None:
    from strangler_proxy.shadow.serve import ComparatorServer

    with monolith_and_service() as (monolith, service):
        # given a comparator whose route is still on the monolith
        config = tmp_path / "strangler.toml"
        store = str(tmp_path / "diffs.sqlite3")
        config.write_text(_routes(store, monolith.url, service.url).replace(
            'mode = "shadow"', 'mode = "monolith"'))
        headers = {TOKEN_HEADER: mirror_token(SECRET)}

        async def main() -> tuple[list[int], str]:
            server = ComparatorServer(config, "127.0.0.1:0")
            await server.start()
            try:
                base = f"http://{server.address}"
                async with httpx.AsyncClient(trust_env=False) as client:
                    # when a mirror arrives, then the route enters shadow mode, then another
                    first = (await client.get(f"{base}/api/products/1/", headers=headers))
                    config.write_text(_routes(store, monolith.url, service.url))
                    os.utime(config, (time.time() + 5, time.time() + 5))  # a new mtime
                    deadline = time.monotonic() + SLOW_MACHINE_SECONDS
                    while server.runner.config.routes[0].mode != "shadow" and \
                            time.monotonic() < deadline:
                        await asyncio.sleep(0.05)
                    second = await client.get(f"{base}/api/products/2/", headers=headers)
                    assert await server.runner.wait_idle(SLOW_MACHINE_SECONDS)
                    await server.runner.flush()
                    metrics = (await client.get(f"{base}/_strangler/metrics")).text
                return [first.status_code, second.status_code], metrics
            finally:
                await server.stop()

        statuses, metrics = asyncio.run(main())
    # then both were taken, but only the one in shadow mode was compared
    assert statuses == [202, 202]
    assert 'route="products",event="skipped_not_shadow"} 1' in metrics
    assert [r.path for r in _records(config)] == ["/api/products/2/"]


def test_print_mirror_token_derives_it_from_the_secret(tmp_path: Path) -> None:
    config = tmp_path / "strangler.toml"
    config.write_text(_routes(str(tmp_path / "d.sqlite3"), "http://127.0.0.1:9",
                              "http://127.0.0.1:9"))
    result = CliRunner().invoke(cli, ["shadow", "serve", "--config", str(config),
                                      "--print-mirror-token"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == mirror_token(SECRET)
    assert SECRET not in result.output


def test_a_proxy_with_another_secret_is_refused_and_counts_it(
        tmp_path: Path, comparator_of: Any) -> None:
    from strangler_proxy.control import ProxyApp
    from strangler_proxy.edge import listen_socket

    with monolith_and_service() as (monolith, service):
        # given a comparator, and a proxy whose routes file has another marker secret
        store = str(tmp_path / "diffs.sqlite3")
        ours = tmp_path / "comparator.toml"
        ours.write_text(_routes(store, monolith.url, service.url))
        comparator = comparator_of(ours)
        config = tmp_path / "strangler.toml"
        config.write_text(_routes(store, monolith.url, service.url, marker_secret="other",
                                  proxy_sends_to="comparator", comparator_url=comparator.url))

        async def main() -> tuple[list[int], bool, str]:
            app = ProxyApp(config, environ={})
            await app.start(proxy_sock=listen_socket("127.0.0.1:0"),
                            admin_sock=listen_socket("127.0.0.1:0"), watch=False)
            try:
                async with httpx.AsyncClient(trust_env=False) as client:
                    statuses = [(await client.get(f"http://{app.proxy_address}/api/products/"
                                                  f"{i}/")).status_code for i in range(3)]
                idle = await app.sink.wait_idle(timeout=SLOW_MACHINE_SECONDS)
                return statuses, idle, app.sink.prometheus_text()
            finally:
                await app.stop(grace=1.0)

        statuses, idle, metrics = asyncio.run(main())
    # then clients are served, the batches (and the idle question) are refused and counted,
    # and nothing reaches the service or the store
    assert statuses == [200] * 3
    assert not idle
    assert 'event="comparator_refused"}' in metrics
    assert service.seen == []
    assert _records(ours) == []


def test_envoy_sends_the_mirror_token_of_the_comparator_url_as_a_header(tmp_path: Path) -> None:
    from strangler_proxy.export import build_plan
    from strangler_proxy.export.envoy import TOKEN_HEADER as ENVOY_TOKEN_HEADER
    from strangler_proxy.export.envoy import render_envoy

    # given a comparator URL with the mirror token as its path (as nginx needs it)
    config = tmp_path / "strangler.toml"
    config.write_text(_routes(str(tmp_path / "d.sqlite3"), "http://127.0.0.1:9",
                              "http://127.0.0.1:9"))
    token = mirror_token(SECRET)
    plan = build_plan(load_config(config), comparator_url=f"http://127.0.0.1:8090"
                      f"{TOKEN_PREFIX}{token}", listen="127.0.0.1:8080")
    # when the routes file is exported for Envoy, whose mirrors keep the client's path
    text = render_envoy(plan, tmp_path)
    # then the mirror policy adds the token as the header the comparator checks
    assert ENVOY_TOKEN_HEADER == TOKEN_HEADER
    assert f'key: "{TOKEN_HEADER}"\n' in text
    assert f'value: "{token}"\n' in text
