"""The shadow sink against real local HTTP servers: copy, compare, store, drop, never block."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from shadow_testkit import JsonServer, monolith_and_service, routes_toml

from strangler_proxy.config import ProxyConfig, parse_config
from strangler_proxy.exchange import RecordedRequest, RecordedResponse, ShadowOffer
from strangler_proxy.shadow import open_store
from strangler_proxy.shadow.sink import ProcessSink, build_sink
from strangler_proxy.shadow.worker import PRIORITY_ENV, ShadowRunner, build_request
from strangler_proxy.shadow_marker import check_marker

Server = JsonServer


@pytest.fixture(autouse=True)
def fair_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker processes at normal priority: SCHED_IDLE ones may not run at all on a loaded
    test machine (their copies are then dropped as starved, tested in-process below)."""
    monkeypatch.setenv(PRIORITY_ENV, "normal")


@pytest.fixture
def servers() -> Iterator[tuple[Server, Server]]:
    with monolith_and_service(stamp=True) as pair:
        yield pair


# Generous on purpose: a copy that takes longer than this is recorded as an error, and a
# loaded CI machine must not turn a slow answer into a failed test. Tests about timeouts set
# their own (and every wait below ends as soon as the work is done, so this costs nothing).
SLOW_MACHINE_SECONDS = 30.0


MARKER_SECRET = "test-marker-secret"


def signed(headers: dict[str, str], method: str, path: str) -> bool:
    """True when the copy's marker is validly signed for ``method path``."""
    return check_marker(headers.get("X-Strangler-Shadow"), MARKER_SECRET, method, path) == ""


def shadow_settings(overrides: str) -> dict[str, object]:
    """The [shadow] keys the tests use: no noise sampling and a generous timeout, unless set."""
    settings: dict[str, object] = {"noise_percent": 0, "timeout": SLOW_MACHINE_SECONDS,
                                   "marker_secret": MARKER_SECRET}
    for line in filter(None, (x.strip() for x in overrides.splitlines())):
        key, value = (part.strip() for part in line.split("=", 1))
        settings[key] = int(value) if value.isdigit() else float(value)
    return settings


def make_config(tmp_path: Path, monolith: Server, service: Server, shadow: str = "",
                route_extra: str = "", compare: str = 'ignore = ["served_at"]') -> ProxyConfig:
    text = routes_toml(tmp_path / "diffs.sqlite3", monolith.url, service.url,
                       shadow=shadow_settings(shadow),
                       route=f"compare = {{ {compare} }}\n{route_extra}")
    return parse_config(text, str(tmp_path / "strangler.toml"))


def offer(path: str = "/api/products/1/", method: str = "GET", body: bytes = b"",
          headers: tuple[tuple[str, str], ...] = (("Host", "shop.example"),),
          primary_body: bytes | None = None) -> ShadowOffer:
    mono = primary_body if primary_body is not None else json.dumps(
        {"id": path, "price": "9.50", "served_at": 1.0}).encode()
    return ShadowOffer(
        route="products", route_template="/api/products/", target="catalog",
        request=RecordedRequest(method, path, "", headers, body),
        primary=RecordedResponse(200, (("Content-Type", "application/json"),), mono,
                                 elapsed_ms=2.0))


def run(config: ProxyConfig, body: Callable[[ShadowRunner], Any],
        rng: Callable[[], float] | None = None) -> Any:
    async def main() -> Any:
        sink = ShadowRunner(config, rng=rng or random.random)
        await sink.start()
        try:
            result = body(sink)
            if asyncio.iscoroutine(result):
                result = await result
            assert await sink.wait_idle(timeout=SLOW_MACHINE_SECONDS * 2)
            return result
        finally:
            await sink.stop()
    return asyncio.run(main())


def stored(tmp_path: Path) -> list[Any]:
    store = open_store(str(tmp_path / "diffs.sqlite3"))
    try:
        return [store.get(r.id) for r in store.records()]
    finally:
        store.close()


def counts(tmp_path: Path) -> dict[tuple[str, str], int]:
    store = open_store(str(tmp_path / "diffs.sqlite3"))
    try:
        return store.counts()
    finally:
        store.close()


def test_copy_is_marked_compared_and_stored(tmp_path: Path,
                                            servers: tuple[Server, Server]) -> None:
    monolith, service = servers
    config = make_config(tmp_path, monolith, service)
    assert run(config, lambda sink: sink.offer(offer())) is True
    method, path, headers, _ = service.seen[0]
    assert (method, path) == ("GET", "/api/products/1/")
    assert signed(headers, method, path)
    assert monolith.seen == []  # no noise sampling asked: the monolith is not called again
    [record] = stored(tmp_path)
    assert (record.verdict, record.template) == ("mismatch", "/api/products/{id}/")
    assert [(d["path"], d["kind"]) for d in record.differences] == [("$.price", "type")]
    assert json.loads(record.service_body)["price"] == 9.5  # bodies kept for mismatches


def test_matching_exchange_is_stored_without_bodies(tmp_path: Path,
                                                    servers: tuple[Server, Server]) -> None:
    monolith, service = servers
    service.handler.price = "9.50"
    run(make_config(tmp_path, monolith, service), lambda sink: sink.offer(offer()))
    [record] = stored(tmp_path)
    assert (record.verdict, record.monolith_body, record.service_body) == ("match", b"", b"")


def test_writes_are_not_copied_unless_the_route_opts_in(tmp_path: Path,
                                                        servers: tuple[Server, Server]) -> None:
    monolith, service = servers
    config = make_config(tmp_path, monolith, service)
    assert run(config, lambda sink: sink.offer(offer(method="POST", body=b"{}"))) is False
    assert service.seen == []
    assert counts(tmp_path)[("products", "skipped_unsafe_method")] == 1
    opted = make_config(tmp_path, monolith, service, route_extra="shadow = { writes = true }")
    assert run(opted, lambda sink: sink.offer(offer(method="POST", body=b'{"a": 1}'))) is True
    assert service.seen[0][0] == "POST"
    assert service.seen[0][3] == b'{"a": 1}'
    assert signed(service.seen[0][2], "POST", service.seen[0][1])


def test_sampling_percent_and_body_cap(tmp_path: Path, servers: tuple[Server, Server]) -> None:
    monolith, service = servers
    config = make_config(tmp_path, monolith, service,
                         route_extra="shadow = { percent = 30, max_body_bytes = 10 }")
    draws = iter([0.1, 0.5, 0.2, 0.9])  # x100 -> 10 (in), 50 (out), 20 (in), 90 (out)

    def offers(sink: ShadowRunner) -> list[bool]:
        sampled = [sink.offer(offer(f"/api/products/{i}/")) for i in range(4)]
        big = sink.offer(offer(method="GET", body=b"x" * 11))
        return [*sampled, big]

    results = run(config, offers, rng=lambda: next(draws, 0.0))
    assert results == [True, False, True, False, False]
    assert len(service.seen) == 2
    got = counts(tmp_path)
    assert got[("products", "skipped_sampling")] == 2
    assert got[("products", "skipped_body_too_large")] == 1


def test_request_rewriting_per_target(tmp_path: Path, servers: tuple[Server, Server]) -> None:
    monolith, service = servers
    config = make_config(tmp_path, monolith, service, route_extra=(
        'shadow = { rewrite = { host = "catalog.internal", path_prefix = "/v2/products/", '
        'authorization = "Bearer service-token" } }'))
    request = RecordedRequest("GET", "/api/products/5/", "a=1",
                              (("Host", "shop"), ("Authorization", "Bearer user")))
    route = config.routes[0]
    out = build_request(request, config.upstreams["catalog"], route)
    assert out.url == f"{service.url}/v2/products/5/?a=1"
    headers = dict(out.headers)
    assert headers["Host"] == "catalog.internal"
    assert headers["Authorization"] == "Bearer service-token"
    run(config, lambda sink: sink.offer(offer(
        "/api/products/5/", headers=(("Host", "shop"), ("Authorization", "Bearer user")))))
    assert service.seen[0][1] == "/v2/products/5/"
    assert service.seen[0][2]["Authorization"] == "Bearer service-token"
    assert service.seen[0][2]["Host"] == "catalog.internal"


def test_noise_sampling_asks_the_monolith_again(tmp_path: Path,
                                               servers: tuple[Server, Server]) -> None:
    monolith, service = servers
    config = make_config(tmp_path, monolith, service, shadow="noise_percent = 100",
                         compare="")
    run(config, lambda sink: sink.offer(offer()))
    assert signed(monolith.seen[0][2], "GET", monolith.seen[0][1])
    kinds = sorted(r.kind for r in stored(tmp_path))
    assert kinds == ["self", "service"]
    self_record = next(r for r in stored(tmp_path) if r.kind == "self")
    # the monolith's own answers differ in served_at: that is what noise learning needs
    assert [d["path"] for d in self_record.differences] == ["$.served_at"]


def test_hung_service_times_out_is_recorded_and_offer_stays_fast(
        tmp_path: Path, servers: tuple[Server, Server]) -> None:
    monolith, service = servers
    service.handler.delay = 3.0
    config = make_config(tmp_path, monolith, service,
                         shadow="timeout = 0.3\nqueue_size = 3\nconcurrency = 1")

    def flood(sink: ShadowRunner) -> tuple[list[bool], float]:
        start = time.perf_counter()
        results = [sink.offer(offer(f"/api/products/{i}/")) for i in range(50)]
        return results, time.perf_counter() - start

    async def flood_and_wait(sink: ShadowRunner) -> tuple[list[bool], float]:
        results = flood(sink)
        assert await sink.wait_idle(timeout=SLOW_MACHINE_SECONDS)
        return results

    results, elapsed = run(config, flood_and_wait)
    # 50 offers in less than one service timeout: no offer waited on the service (each would
    # take >= 0.3 s), with room for a loaded machine (they take ~2 ms in all when idle)
    assert elapsed < 0.25
    assert sum(results) <= 4  # queue of 3 (+1 already taken by the worker)
    got = counts(tmp_path)
    assert got[("products", "dropped_queue_full")] == 50 - sum(results)
    errors = [r for r in stored(tmp_path) if r.verdict == "error"]
    assert errors
    assert errors[0].error == "timeout"
    assert got[("products", "service_timeout")] == len(errors)
    assert got[("products", "service_error")] == len(errors)  # the verdict, counted once


def test_a_starved_worker_drops_the_copy_instead_of_blaming_the_service(
        tmp_path: Path, servers: tuple[Server, Server]) -> None:
    monolith, service = servers
    service.handler.delay = 0.5  # answers well before the loop below gets to look
    config = make_config(tmp_path, monolith, service, shadow="timeout = 0.3")

    async def starve(sink: ShadowRunner) -> bool:
        accepted = sink.offer(offer())
        await until(lambda: len(service.seen) == 1)  # the copy is out, its 0.3 s timer runs
        time.sleep(1.2)  # noqa: ASYNC251 - on purpose: this process gets no CPU for 1.2 s
        return accepted

    # when the worker's timer fires 0.9 s late
    assert run(config, starve) is True
    # then no verdict is stored (the answer sat unread), and the drop is counted
    assert stored(tmp_path) == []
    got = counts(tmp_path)
    assert got[("products", "dropped_worker_starved")] == 1
    assert ("products", "service_error") not in got


def test_dead_service_is_recorded_as_connect_error(tmp_path: Path,
                                                  servers: tuple[Server, Server]) -> None:
    monolith, service = servers
    service.close()
    run(make_config(tmp_path, monolith, service), lambda sink: sink.offer(offer()))
    [record] = stored(tmp_path)
    assert record.verdict == "error"
    assert record.error.startswith("connect")


def test_secrets_never_reach_the_store(tmp_path: Path, servers: tuple[Server, Server]) -> None:
    monolith, service = servers
    config = make_config(tmp_path, monolith, service)
    run(config, lambda sink: sink.offer(offer(headers=(
        ("Cookie", "sessionid=s3cret"), ("Authorization", "Bearer s3cret")))))
    assert service.seen[0][2]["Cookie"] == "sessionid=s3cret"  # the copy itself is faithful
    raw = (tmp_path / "diffs.sqlite3").read_bytes()
    wal = tmp_path / "diffs.sqlite3-wal"
    assert b"s3cret" not in raw + (wal.read_bytes() if wal.exists() else b"")


def test_bad_primary_bodies_do_not_break_the_sink(tmp_path: Path,
                                                  servers: tuple[Server, Server]) -> None:
    monolith, service = servers
    config = make_config(tmp_path, monolith, service)

    def offers(sink: ShadowRunner) -> None:
        sink.offer(offer("/api/products/1/", primary_body=b"\xff\x00 binary"))
        sink.offer(offer("/api/products/2/", primary_body=b"{broken"))

    run(config, offers)
    records = stored(tmp_path)
    assert sorted(d["kind"] for r in records for d in r.differences) == [
        "invalid_json", "invalid_json"]


def test_prometheus_text_counts_events(tmp_path: Path, servers: tuple[Server, Server]) -> None:
    monolith, service = servers

    async def body(sink: ShadowRunner) -> str:
        sink.offer(offer())
        assert await sink.wait_idle(timeout=SLOW_MACHINE_SECONDS)
        return sink.prometheus_text()

    text = run(make_config(tmp_path, monolith, service), body)
    assert 'strangler_shadow_events_total{route="products",event="accepted"} 1' in text
    assert 'event="service_mismatch"} 1' in text
    assert "strangler_shadow_queue_depth 0" in text


# -- end to end behind the real proxy ---------------------------------------------------------


def _listening() -> Any:
    from strangler_proxy.edge import listen_socket

    return listen_socket("127.0.0.1:0")


def test_shadow_behind_the_real_proxy_client_gets_monolith_store_gets_record(
        tmp_path: Path, servers: tuple[Server, Server]) -> None:
    import httpx

    from strangler_proxy.control import ProxyApp

    monolith, service = servers
    routes_file = tmp_path / "strangler.toml"
    routes_file.write_text(config_text_of(tmp_path, monolith, service))

    async def main() -> tuple[list[float], list[float]]:
        app = ProxyApp(routes_file, environ={})
        await app.start(proxy_sock=_listening(), admin_sock=_listening(), watch=False)
        try:
            base = f"http://{app.proxy_address}"
            async with httpx.AsyncClient(trust_env=False) as client:
                # given a well-behaved service: the client gets the monolith's answer
                answer = await client.get(f"{base}/api/products/1/")
                assert answer.json()["price"] == "9.50"
                assert await app.sink.wait_idle(timeout=SLOW_MACHINE_SECONDS)
                # when the service hangs for 3 s on every request
                service.handler.delay = 3.0
                hung = [await _timed(client, f"{base}/api/products/{i}/") for i in range(10)]
                service.handler.delay = 0.0
                plain = [await _timed(client, f"{base}/other/{i}/") for i in range(10)]
                # the hung copies time out (1.5 s, all at once) and are stored as errors
                assert await app.sink.wait_idle(timeout=SLOW_MACHINE_SECONDS)
            return hung, plain
        finally:
            await app.stop(grace=1.0)

    hung, plain = asyncio.run(main())
    # then the primary path is not slowed by the hung shadow service
    assert max(hung) < 0.4, hung
    assert sorted(hung)[5] < sorted(plain)[5] + 0.05
    records = stored(tmp_path)
    first = next(r for r in records if r.path == "/api/products/1/")
    assert (first.verdict, first.differences[0]["path"]) == ("mismatch", "$.price")
    assert any(r.verdict == "error" for r in records)


async def _timed(client: Any, url: str) -> float:
    start = time.perf_counter()
    response = await client.get(url)
    assert response.status_code == 200
    return time.perf_counter() - start


def config_text_of(tmp_path: Path, monolith: Server, service: Server) -> str:
    return routes_toml(tmp_path / "diffs.sqlite3", monolith.url, service.url, listen=True,
                       shadow={"noise_percent": 0, "timeout": 1.5, "concurrency": 10},
                       route='compare = { ignore = ["served_at"] }')


def test_process_sink_hands_offers_to_a_worker_process(tmp_path: Path,
                                                      servers: tuple[Server, Server]) -> None:
    monolith, service = servers
    routes_file = tmp_path / "strangler.toml"
    routes_file.write_text(config_text_of(tmp_path, monolith, service))
    config = parse_config(routes_file.read_text(), str(routes_file))

    async def main() -> tuple[bool, bool, str, int, bool, str]:
        sink = build_sink(config)
        assert isinstance(sink, ProcessSink)
        await sink.start()
        try:
            first = sink.offer(offer())
            assert await sink.wait_idle(timeout=SLOW_MACHINE_SECONDS)
            text = await worker_report(sink, 'event="service_mismatch"} 1')
            # when the worker dies, offers are dropped and counted, never blocked
            worker = sink._process  # noqa: SLF001 - the test kills the worker on purpose
            assert worker is not None
            worker.kill()
            await asyncio.to_thread(worker.wait, 5)
            await until(lambda: not sink.worker_alive)
            after = sink.offer(offer())
            down = sink.counts[("products", "dropped_worker_down")]
            # then a new worker takes over after a pause, and copies flow again
            await until(lambda: sink.worker_alive)
            again = sink.offer(offer("/api/products/2/"))
            assert await sink.wait_idle(timeout=SLOW_MACHINE_SECONDS)
            return first, after, text, down, again, sink.prometheus_text()
        finally:
            await sink.stop()

    first, after, text, down, again, later = asyncio.run(main())
    assert (first, after, down, again) == (True, False, 1, True)
    assert 'event="service_mismatch"} 1' in text
    assert "strangler_shadow_worker_restarts_total 1" in later
    records = stored(tmp_path)
    assert sorted(r.path for r in records) == ["/api/products/1/", "/api/products/2/"]
    assert {r.differences[0]["path"] for r in records} == {"$.price"}


async def until(condition: Callable[[], bool], seconds: float = SLOW_MACHINE_SECONDS) -> None:
    """Wait (bounded) until ``condition()`` holds; fail the test if it never does."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def worker_report(sink: ProcessSink, expected: str) -> str:
    """The sink's metrics once the worker's counters (sent every second) show ``expected``."""
    deadline = time.monotonic() + SLOW_MACHINE_SECONDS
    text = sink.prometheus_text()
    while expected not in text and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        text = sink.prometheus_text()
    return text


def test_process_sink_refuses_to_start_on_a_bad_store(tmp_path: Path,
                                                      servers: tuple[Server, Server]) -> None:
    from strangler_proxy.errors import StartupError

    monolith, service = servers
    (tmp_path / "diffs.sqlite3").mkdir()  # a directory where the store file should be
    routes_file = tmp_path / "strangler.toml"
    routes_file.write_text(config_text_of(tmp_path, monolith, service))
    sink = build_sink(parse_config(routes_file.read_text(), str(routes_file)))
    with pytest.raises(StartupError, match="shadow worker did not start"):
        asyncio.run(sink.start())


def test_service_that_resets_the_connection_is_recorded_as_an_error(
        tmp_path: Path, servers: tuple[Server, Server]) -> None:
    import socket
    import struct
    import threading

    monolith, _ = servers
    # given a "service" that accepts each connection and closes it without a word
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    done = threading.Event()

    def slam() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            linger_zero = struct.pack("ii", 1, 0)  # close with an RST, not a clean FIN
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger_zero)
            conn.close()

    thread = threading.Thread(target=slam, daemon=True)
    thread.start()
    try:
        text = routes_toml(tmp_path / "diffs.sqlite3", monolith.url,
                           f"http://127.0.0.1:{listener.getsockname()[1]}",
                           shadow=shadow_settings(""))
        config = parse_config(text, str(tmp_path / "strangler.toml"))
        # when an exchange is offered
        assert run(config, lambda sink: sink.offer(offer())) is True
    finally:
        done.set()
        thread.join(timeout=5)
        listener.close()
    # then it is stored as an error naming what happened, and counted
    [record] = stored(tmp_path)
    assert (record.verdict, record.service_status) == ("error", 0)
    assert record.error.split(":")[0] in {"ProtocolError", "ConnectionResetError", "connect"}
    got = counts(tmp_path)
    assert (got[("products", "service_error")], got[("products", "service_call_failed")]) == (
        1, 1)  # one exchange: one error verdict, and why


def test_a_worker_that_cannot_restart_never_blocks_the_proxy_or_its_stop(
        tmp_path: Path, servers: tuple[Server, Server]) -> None:
    import shutil

    monolith, service = servers
    routes_file = tmp_path / "strangler.toml"
    routes_file.write_text(config_text_of(tmp_path, monolith, service))
    config = parse_config(routes_file.read_text(), str(routes_file))

    async def main() -> tuple[list[bool], float, int]:
        sink = build_sink(config)
        assert isinstance(sink, ProcessSink)
        await sink.start()
        try:
            # given a worker that dies, and a store that no longer opens (a directory now)
            worker = sink._process  # noqa: SLF001 - the test kills the worker on purpose
            assert worker is not None
            for leftover in tmp_path.glob("diffs.sqlite3*"):
                leftover.unlink()
            (tmp_path / "diffs.sqlite3").mkdir()
            worker.kill()
            await asyncio.to_thread(worker.wait, 5)
            await until(lambda: not sink.worker_alive)
            # when offers keep coming while restarts fail
            offers = []
            for _ in range(3):
                offers.append(sink.offer(offer()))
                await asyncio.sleep(0.6)
            restarts = sink.restarts
        finally:
            start = time.monotonic()
            await sink.stop()
            stopped_in = time.monotonic() - start
        return offers, stopped_in, restarts

    offers, stopped_in, restarts = asyncio.run(main())
    # then every offer was dropped at once, no worker came back, and stop did not hang
    assert (offers, restarts) == ([False, False, False], 0)
    assert stopped_in < 8.0
    shutil.rmtree(tmp_path / "diffs.sqlite3")


class _Socket:
    """The worker's end of a ProcessSink, in memory: frames written, with a settable backlog."""

    def __init__(self, backlog: int = 0) -> None:
        self.frames: list[bytes] = []
        self.backlog = backlog

    def write(self, data: bytes) -> None:
        self.frames.append(data)

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return self.backlog


def test_process_sink_decides_before_copying_and_sends_the_wire_bytes(
        tmp_path: Path, servers: tuple[Server, Server]) -> None:
    import marshal

    from strangler_proxy.exchange import offer_from_message
    from strangler_proxy.shadow.sink import FRAME_HEADER

    monolith, service = servers
    config = make_config(tmp_path, monolith, service, shadow="max_body_bytes = 16",
                         route_extra="shadow = { percent = 50 }")
    draws = iter([0.2, 0.7, 0.1, 0.3, 0.4])
    sink = ProcessSink(config, rng=lambda: next(draws))
    socket = _Socket()
    sink._transport = socket  # type: ignore[assignment]  # noqa: SLF001
    # admission happens before any byte is copied: sampling, method, room in the buffer
    assert sink.admit("products", "GET") is True  # 0.2 * 100 < 50
    assert sink.admit("products", "GET") is False  # 0.7: not sampled
    assert sink.admit("products", "POST") is False  # writes are not copied by default
    socket.backlog = 10**9
    assert sink.admit("products", "GET") is False  # the worker is behind: dropped
    socket.backlog = 0
    raw_headers = [(b"Host", b"shop"), (b"Connection", b"keep-alive, X-Hop"), (b"X-Hop", b"1"),
                   (b"Cookie", b"sid=secret"), (b"Accept", b"application/json")]
    message = ("offer", "products", "/api/products/", "catalog", "GET", "/api/products/1/",
               b"page=2", raw_headers, b"", False, b"rid-1", "127.0.0.1", 200,
               [(b"Content-Type", b"application/json")], b"{}", False, 1.5, "", {})
    assert sink.offer_raw(message) is True
    too_big = message[:8] + (b"x" * 17,) + message[9:]
    assert sink.offer_raw(too_big) is False
    assert dict(sink.counts) == {
        ("products", "skipped_sampling"): 1, ("products", "skipped_unsafe_method"): 1,
        ("products", "dropped_queue_full"): 1, ("products", "handed_to_worker"): 1,
        ("products", "skipped_body_too_large"): 1}
    # what the worker reads: decoded, hop-by-hop headers (and those Connection names) gone
    (frame,) = socket.frames
    got = offer_from_message(marshal.loads(frame[FRAME_HEADER.size:]))
    assert (got.request.query, got.request.request_id) == ("page=2", "rid-1")
    assert got.request.headers == (("Host", "shop"), ("Cookie", "sid=secret"),
                                   ("Accept", "application/json"))
    assert got.primary.headers == (("Content-Type", "application/json"),)


def test_a_new_store_in_the_routes_file_takes_over_without_a_restart(
        tmp_path: Path, servers: tuple[Server, Server]) -> None:
    monolith, service = servers
    first = make_config(tmp_path, monolith, service)

    def config_with_store(store: str) -> ProxyConfig:
        body = routes_toml(Path(store), monolith.url, service.url, shadow=shadow_settings(""),
                           route='compare = { ignore = ["served_at"] }')
        return parse_config(body, str(tmp_path / "strangler.toml"))

    async def main() -> None:
        runner = ShadowRunner(first)
        await runner.start()
        try:
            assert runner.offer(offer("/api/products/1/"))
            assert await runner.wait_idle(timeout=SLOW_MACHINE_SECONDS)
            # the routes file now names another store: the next records go there
            runner.reconfigure(config_with_store(str(tmp_path / "second.sqlite3")))
            assert runner.offer(offer("/api/products/2/"))
            assert await runner.wait_idle(timeout=SLOW_MACHINE_SECONDS)
            # a store that cannot be opened leaves the working one in use
            (tmp_path / "a-file").write_text("not a directory")
            runner.reconfigure(config_with_store(str(tmp_path / "a-file" / "x.sqlite3")))
            assert runner.offer(offer("/api/products/3/"))
            assert await runner.wait_idle(timeout=SLOW_MACHINE_SECONDS)
        finally:
            await runner.stop()

    asyncio.run(main())
    assert [r.path for r in stored(tmp_path)] == ["/api/products/1/"]
    second = open_store(str(tmp_path / "second.sqlite3"))
    try:
        assert sorted(r.path for r in second.records()) == ["/api/products/2/", "/api/products/3/"]
    finally:
        second.close()


def test_a_write_is_not_copied_without_a_marker_secret(tmp_path: Path,
                                                       servers: tuple[Server, Server]) -> None:
    # without a secret no service would honour the marker: the copy would really write
    monolith, service = servers
    text = routes_toml(tmp_path / "diffs.sqlite3", monolith.url, service.url,
                       shadow={"noise_percent": 0, "timeout": SLOW_MACHINE_SECONDS},
                       route="shadow = { writes = true }")
    config = parse_config(text, str(tmp_path / "strangler.toml"))
    run(config, lambda sink: sink.offer(offer(method="POST", body=b"{}")))
    assert service.seen == []
    assert counts(tmp_path)[("products", "skipped_no_marker_secret")] == 1


def test_the_copy_gets_the_request_id_and_credentials_only_when_the_route_allows(
        tmp_path: Path) -> None:
    config = parse_config(routes_toml(tmp_path / "d.sqlite3", "http://127.0.0.1:1",
                                      "http://127.0.0.1:2", shadow={},
                                      route="shadow = { credentials = false }"))
    request = RecordedRequest("GET", "/api/products/5/", "", (
        ("Host", "shop"), ("Authorization", "Bearer user"), ("Cookie", "sessionid=1"),
        ("X-Request-ID", "client-sent")), request_id="rid-1")
    kept = dict(build_request(request, config.upstreams["catalog"]).headers)
    dropped = dict(build_request(request, config.upstreams["catalog"], config.routes[0]).headers)
    assert kept["X-Request-ID"] == dropped["X-Request-ID"] == "rid-1"
    assert kept["Authorization"] == "Bearer user"
    assert "Authorization" not in dropped
    assert "Cookie" not in dropped
