"""The proxy's cheap copy path to the comparator: request-only records, their batches and limits.

No sockets: a real ``ClientConnection`` and ``UpstreamConnection`` run over in-memory transports
(as ``bench/proxy/hotpath.py`` does), with the real ``RemoteSink`` whose connection to the
comparator is in memory too; what it wrote is read back as the comparator reads it (signature,
frames, records). Live proxy → comparator runs are in test_comparator.py.
"""

from __future__ import annotations

import ast
import asyncio
import doctest
import marshal
import struct
import time
from pathlib import Path
from typing import Any

from shadow_testkit import MemoryTransport, routes_toml

from strangler_proxy.config import load_config
from strangler_proxy.edge.forward import ProxyState
from strangler_proxy.edge.server import ClientConnection
from strangler_proxy.edge.upstream import UpstreamConnection, build_pools
from strangler_proxy.exchange import COPY_EXCHANGE, COPY_REQUEST_ONLY
from strangler_proxy.metrics import Metrics
from strangler_proxy.routing import RouteTable
from strangler_proxy.shadow import copies
from strangler_proxy.shadow.remote import MIN_FRACTION, Pace, RemoteSink, _RemoteLink
from strangler_proxy.shadow.serve import (
    AUTH_HEADER,
    OFFERS_PATH,
    TOOK_HEADER,
    Comparator,
    ComparatorRunner,
    check_batch_auth,
)
from strangler_proxy.shadow.sink import FRAME_HEADER

SECRET = "copies-test-secret"
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")


def _config(tmp_path: Path, route: str = "") -> Path:
    path = tmp_path / "strangler.toml"
    path.write_text(routes_toml(tmp_path / "d.sqlite3", "http://127.0.0.1:9/base",
                                "http://127.0.0.1:9", route=route, shadow={
                                    "marker_secret": SECRET, "proxy_sends_to": "comparator",
                                    "comparator_url": "http://127.0.0.1:9"}))
    return path


class Proxy:
    """The proxy's connection code and a RemoteSink, all in memory, on the running loop."""

    def __init__(self, config_path: Path, buffer_bytes: int = 1 << 20) -> None:
        loop = asyncio.get_running_loop()
        config = load_config(config_path)
        self.sink = RemoteSink(config, buffer_bytes=buffer_bytes)
        self.wire = MemoryTransport()  # the connection to the comparator
        self.sink._transport = self.wire  # type: ignore[assignment]  # noqa: SLF001
        self.sink._link = _RemoteLink(self.sink)  # type: ignore[assignment]  # noqa: SLF001
        self.sink._loop = loop  # noqa: SLF001
        metrics = Metrics()
        self.state = ProxyState(RouteTable(config), build_pools(config, loop, metrics),
                                metrics, self.sink, loop)
        self.client = ClientConnection(self.state, loop)
        self.client.connection_made(MemoryTransport())  # type: ignore[arg-type]
        for pool in self.state.pools.values():
            conn = UpstreamConnection(pool)
            conn.connection_made(MemoryTransport())  # type: ignore[arg-type]
            pool.open += 1
            pool.idle.append(conn)

    def request(self, raw: bytes) -> None:
        """One request through the proxy, the monolith answering RESPONSE."""
        self.client.data_received(raw)
        conn = self.client.queue[0].conn
        assert conn is not None
        conn.data_received(RESPONSE)

    def flush(self) -> list[bytes]:
        """Send what waits now (the timer's job) and return the batches' bodies, verified."""
        if self.sink._flush_at is not None:  # noqa: SLF001
            self.sink._flush_at.cancel()  # noqa: SLF001
        self.sink._flush()  # noqa: SLF001
        return batches(self.wire)


def batches(wire: MemoryTransport) -> list[bytes]:
    """The bodies of the POSTs written, each checked as the comparator checks it."""
    data = b"".join(wire.written)
    wire.written.clear()
    bodies = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0] == f"POST {OFFERS_PATH} HTTP/1.1"
        fields = dict(line.split(": ", 1) for line in lines[1:])
        size = int(fields["Content-Length"])
        body, data = rest[:size], rest[size:]
        assert check_batch_auth(fields[AUTH_HEADER], SECRET, OFFERS_PATH, body, 60.0) == ""
        bodies.append(body)
    return bodies


def frames(body: bytes) -> list[bytes]:
    out, at = [], 0
    while at < len(body):
        (size,) = FRAME_HEADER.unpack_from(body, at)
        out.append(body[at + FRAME_HEADER.size:at + FRAME_HEADER.size + size])
        at += FRAME_HEADER.size + size
    return out


GET = (b"GET /api/products/7/?q=1 HTTP/1.1\r\nHost: shop.example\r\nX-Request-ID: req-123\r\n"
       b"Cookie: s=1\r\nX-Forwarded-For: 6.6.6.6\r\nX-Strangler-Shadow: 1\r\n"
       b"Connection: keep-alive\r\n\r\n")


def test_a_safe_request_becomes_one_record_the_comparator_reads_back_as_the_client_sent_it(
        tmp_path: Path) -> None:
    async def main() -> tuple[list[bytes], dict[Any, int]]:
        proxy = Proxy(_config(tmp_path))
        # given a GET on the shadow route, admitted as a request-only copy
        assert proxy.sink.admit("products", "GET") == COPY_REQUEST_ONLY
        proxy.request(GET)
        # then nothing is sent before the timer (or FLUSH_BYTES)
        assert proxy.wire.written == []
        return proxy.flush(), dict(proxy.sink.counts)

    bodies, counts = asyncio.run(main())
    # and one signed batch holds one record, not a marshalled offer
    assert len(bodies) == 1
    (frame,) = frames(bodies[0])
    assert frame[0] == copies.COPY_KIND
    copy = copies.decode(frame, "/base")
    request = copy.request
    assert copy.route == "products"
    assert abs(copy.sent_at - time.time()) < 60  # the proxy's wall clock
    # the client's request: the monolith's base path gone, the client's Host back, the
    # proxy's own headers (forwarding, Via, X-Request-ID, X-Strangler-*) and hop-by-hop gone
    assert (request.method, request.path, request.query) == ("GET", "/api/products/7/", "q=1")
    assert dict(request.headers) == {"Host": "shop.example", "Cookie": "s=1"}
    assert (request.request_id, request.client, request.body) == ("req-123", "127.0.0.1", b"")
    assert counts[("products", "handed_to_worker")] == 1


def test_writes_are_not_copied_unless_the_route_opts_in_and_then_go_whole(
        tmp_path: Path) -> None:
    post = (b"POST /api/products/ HTTP/1.1\r\nHost: shop\r\nContent-Length: 4\r\n\r\n"
            b"abcd")

    async def main(route: str) -> tuple[int, list[bytes], dict[Any, int]]:
        proxy = Proxy(_config(tmp_path, route))
        how = proxy.sink.admit("products", "POST")
        proxy.request(post)
        return how, proxy.flush(), dict(proxy.sink.counts)

    how, bodies, counts = asyncio.run(main(""))
    assert (how, bodies) == (0, [])
    assert counts[("products", "skipped_unsafe_method")] == 2  # the probe above, the request
    how, bodies, _ = asyncio.run(main("shadow = { writes = true }"))
    assert how == COPY_EXCHANGE
    # a write cannot be asked of the monolith again: it goes whole, the primary's answer too
    (frame,) = frames(bodies[0])
    message = marshal.loads(frame)
    assert (message[0], message[4], message[8], message[12], message[14]) == \
        ("offer", "POST", b"abcd", 200, b"{}")


def test_copies_are_dropped_and_counted_when_the_comparator_is_slow_or_away(
        tmp_path: Path) -> None:
    async def main() -> tuple[dict[Any, int], int, dict[Any, int]]:
        proxy = Proxy(_config(tmp_path), buffer_bytes=1000)
        records = proxy.sink._records  # noqa: SLF001
        assert records is not None
        for _ in range(10):
            proxy.request(GET)
        kept = len(records)
        proxy.sink.prometheus_text()  # folds the copies appended into the counters
        slow = dict(proxy.sink.counts)
        proxy.flush()
        proxy.request(GET)  # admitted: its record waits for the batch
        proxy.wire.closing = True  # the comparator went away before the batch left
        assert proxy.flush() == []  # nothing sent: the waiting copy is counted
        proxy.request(GET)  # not admitted
        return slow, kept, dict(proxy.sink.counts)

    slow, kept, away = asyncio.run(main())
    # memory stays bounded: past buffer_bytes, copies are dropped, not queued
    assert 0 < kept <= 1000 + len(GET) + 200
    assert slow[("products", "handed_to_worker")] + slow[("products", "dropped_queue_full")] \
        == 10
    assert slow[("products", "dropped_queue_full")] >= 5
    assert away[("products", "dropped_comparator_down")] == 2


def test_a_batch_goes_at_flush_bytes_without_waiting_for_the_timer(tmp_path: Path) -> None:
    async def main() -> tuple[list[bytes], list[bytes]]:
        proxy = Proxy(_config(tmp_path))
        proxy.sink._copies.flush_bytes = 600  # noqa: SLF001
        for _ in range(10):
            proxy.request(GET)
        early = batches(proxy.wire)
        return early, proxy.flush()

    early, rest = asyncio.run(main())
    assert len(early) >= 2  # sent with no timer having fired
    assert all(len(body) >= 600 for body in early)
    assert sum(len(frames(body)) for body in early + rest) == 10


def test_the_comparator_takes_records_beside_frames_and_refuses_a_bad_one_naming_its_byte(
        tmp_path: Path) -> None:
    config = load_config(_config(tmp_path))
    runner = ComparatorRunner(config, prefiltered=True)
    taken: list[copies.Copy] = []
    runner.copied = taken.append  # type: ignore[assignment, method-assign]
    comparator = Comparator(runner)
    head = (b"GET /base/api/products/1/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"
            b"X-Forwarded-Host: shop\r\nX-Request-ID: r1\r\n\r\n")
    record = copies.encode(b"products", head, b"", 1.0)
    counts = FRAME_HEADER.pack(len(m := marshal.dumps(("counts", {("products", "x"): 1})))) + m
    assert comparator._offers(record + counts + record).startswith(b"HTTP/1.1 204")  # noqa: SLF001
    assert [(c.route, c.request.path, dict(c.request.headers)["Host"]) for c in taken] == \
        [("products", "/api/products/1/", "shop")] * 2
    assert runner.counts[("products", "x")] == 1
    # a record whose head runs past its end, or a head that is not HTTP: 400 at that byte
    cut = record[:4] + record[4:8] + struct.pack("!I", 10_000) + record[12:]
    answer = comparator._offers(record + cut)  # noqa: SLF001
    assert answer.startswith(b"HTTP/1.1 400")
    assert f"bad frame at byte {len(record)}".encode() in answer
    assert b"run past its end" in answer
    assert len(taken) == 3  # the good record before it was taken
    bad = copies.encode(b"products", b"hello\r\n\r\n", b"", 1.0)
    assert b"request line" in comparator._offers(bad)  # noqa: SLF001
    # the message names the line, never its bytes (a head may carry credentials)
    secret = copies.encode(b"products", b"GET / HTTP/1.1\r\nAuthorization Bearer s3cret\r\n"
                           b"\r\n", b"", 1.0)
    answer = comparator._offers(secret)  # noqa: SLF001
    assert b"line 2 of a copy record's head" in answer
    assert b"s3cret" not in answer
    # a full queue: the record is counted by its route name, not decoded
    runner._queue = asyncio.Queue(maxsize=1)  # noqa: SLF001
    runner._queue.put_nowait(None)  # type: ignore[arg-type]  # noqa: SLF001
    assert comparator._offers(record).startswith(b"HTTP/1.1 204")  # noqa: SLF001
    assert len(taken) == 3
    assert runner.counts[("products", "dropped_queue_full")] == 1


def test_the_comparator_refuses_a_record_it_cannot_ask_the_monolith_again(
        tmp_path: Path) -> None:
    runner = ComparatorRunner(load_config(_config(tmp_path)), prefiltered=True)
    post = copies.decode(copies.encode(
        b"products", b"POST /api/products/ HTTP/1.1\r\nHost: shop\r\n\r\n", b"x", 1.0)[4:])
    nowhere = copies.decode(copies.encode(
        b"gone", b"GET /x HTTP/1.1\r\nHost: shop\r\n\r\n", b"", 1.0)[4:])
    assert not runner.copied(post)
    assert not runner.copied(nowhere)
    assert runner.counts[("products", "skipped_unsafe_method")] == 1
    assert runner.counts[("gone", "skipped_no_service")] == 1


def test_the_doctest_of_parse_head_passes() -> None:
    # read from the source: the compiled module (native.py) keeps no docstrings to find
    source = Path(copies.__file__).with_name("copies.py").read_text()
    doc = next(ast.get_docstring(node) or "" for node in ast.parse(source).body
               if isinstance(node, ast.FunctionDef) and node.name == "parse_head")
    test = doctest.DocTestParser().get_doctest(doc, {"parse_head": copies.parse_head},
                                               "parse_head", None, 0)
    runner = doctest.DocTestRunner()
    runner.run(test)
    result = runner.summarize(verbose=False)
    assert (result.failed, result.attempted) == (0, 2)


def test_the_buffer_samples_caps_bodies_and_keeps_its_counters_across_a_reload() -> None:
    counts: dict[tuple[str, str], int] = {}
    refused: list[tuple[str, str]] = []
    buffer = copies.CopyBuffer(1 << 20, lambda: 0.5, counts,
                               lambda route, why: refused.append((route, why)),
                               lambda: None, lambda: None)
    buffer.set_plans({"a": copies.plan("a", 100.0, False, 10, 0), "b": None,
                      "c": copies.plan("c", 40.0, False, 10, 1)})
    buffer.transport = MemoryTransport()
    head = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    # sampled out (0.5 * 100 >= 40), no service, a body over the route's cap
    assert (buffer.admit("c", "GET"), buffer.admit("b", "GET")) == (0, 0)
    assert buffer.admit("a", "GET") == COPY_REQUEST_ONLY
    assert not buffer.copy("a", head, bytearray(b"x" * 11), False)
    assert buffer.copy("a", head, bytearray(b"body"), False)
    assert refused == [("c", "skipped_sampling"), ("b", "skipped_no_service"),
                       ("a", "skipped_body_too_large")]
    # a reload keeps what was counted; the record is still there to send
    buffer.set_plans({"a": copies.plan("a", 100.0, False, 10, 0)})
    assert counts == {("a", "handed_to_worker"): 1}
    (frame,) = frames(bytes(buffer.take()))
    assert copies.decode(frame).request.body == b"body"


def test_the_comparator_says_how_many_copies_of_a_batch_it_took(tmp_path: Path) -> None:
    runner = ComparatorRunner(load_config(_config(tmp_path)), prefiltered=True)
    runner.copied = lambda copy: True  # type: ignore[assignment, method-assign]
    comparator = Comparator(runner)
    record = copies.encode(b"products", b"GET /base/a HTTP/1.1\r\nHost: h\r\n\r\n", b"", 1.0)
    answer = comparator._offers(record * 3)  # noqa: SLF001
    assert f"{TOOK_HEADER}: 3 3\r\n".encode() in answer
    # with a queue of one free slot: the first is taken, the other two dropped
    runner._queue = asyncio.Queue(maxsize=2)  # noqa: SLF001
    runner._queue.put_nowait(None)  # type: ignore[arg-type]  # noqa: SLF001
    runner.copied = lambda copy: runner._queue.put_nowait(None)  # type: ignore  # noqa: SLF001
    answer = comparator._offers(record * 3)  # noqa: SLF001
    assert f"{TOOK_HEADER}: 1 3\r\n".encode() in answer
    # a batch of counters alone says nothing (no copy to pace)
    counts = FRAME_HEADER.pack(len(m := marshal.dumps(("counts", {})))) + m
    assert TOOK_HEADER.encode() not in comparator._offers(counts)  # noqa: SLF001


def test_pace_cuts_to_the_share_taken_and_grows_back_while_all_are_taken() -> None:
    now = [0.0]
    pace = Pace(clock=lambda: now[0])
    assert pace.took(10, 10) == 1.0  # all taken: stays at 1
    now[0] = 0.01
    assert pace.took(25, 100) == 0.25  # a quarter taken: a quarter made
    now[0] = 0.02
    assert pace.took(5, 10) == 0.125
    now[0] = 1.02  # a second of batches all taken: doubled
    assert abs(pace.took(10, 10) - 0.25) < 1e-9
    now[0] = 60.0  # growth counts at most one second between answers
    assert abs(pace.took(10, 10) - 0.5) < 1e-9
    for _ in range(40):
        pace.took(0, 10)
    assert pace.fraction == MIN_FRACTION  # never 0: it keeps probing
    assert pace.took(3, 0) == MIN_FRACTION  # an answer about no copy changes nothing


def test_a_proxy_paced_by_the_comparator_copies_only_that_share_and_counts_the_rest(
        tmp_path: Path) -> None:
    async def main() -> tuple[int, dict[tuple[str, str], int], str, dict[Any, int]]:
        proxy = Proxy(_config(tmp_path))
        proxy.sink._copies.rng = iter([i / 100 for i in range(100)]).__next__  # noqa: SLF001
        # the comparator answered a batch: it took 1 copy of 4
        link = proxy.sink._link  # noqa: SLF001
        link.data_received(f"HTTP/1.1 204 No Content\r\n{TOOK_HEADER}: 1 4\r\n\r\n".encode())
        for _ in range(100):
            proxy.request(GET)
        sent = sum(len(frames(body)) for body in proxy.flush())
        text = proxy.sink.prometheus_text()
        return sent, proxy.sink.counts, text, dict(proxy.state.metrics.shadow_offers)

    sent, counts, text, offers = asyncio.run(main())
    assert sent == 25  # the draws under 0.25
    assert counts[("products", "skipped_comparator_busy")] == 75
    assert counts[("products", "handed_to_worker")] == 25
    assert "strangler_shadow_comparator_pace 0.25" in text
    # the proxy's own counter saw the 25 copies made; the paced ones cost it nothing
    assert offers == {("products", "accepted"): 25}


def test_the_comparator_takes_no_more_than_its_rate_cap_and_says_so(tmp_path: Path) -> None:
    # given a comparator capped at 10 copies a second (a bucket of 10)
    path = tmp_path / "capped.toml"
    path.write_text(_config(tmp_path).read_text().replace(
        "[shadow]\n", "[shadow]\ncomparator_max_per_second = 10\n", 1))
    runner = ComparatorRunner(load_config(path), prefiltered=True)
    taken: list[copies.Copy] = []
    runner.copied = taken.append  # type: ignore[assignment, method-assign]
    comparator = Comparator(runner)
    record = copies.encode(b"products", b"GET /base/a HTTP/1.1\r\nHost: h\r\n\r\n", b"", 1.0)
    # when a batch of 25 arrives at once: 10 taken, 15 counted and reported
    answer = comparator._offers(record * 25)  # noqa: SLF001
    assert f"{TOOK_HEADER}: 10 25\r\n".encode() in answer
    assert len(taken) == 10
    assert runner.counts[("products", "dropped_rate_limited")] == 15
    # and half a second later the bucket has five more
    runner._bucket_at -= 0.5  # type: ignore[operator]  # noqa: SLF001
    assert f"{TOOK_HEADER}: 5 8\r\n".encode() in comparator._offers(record * 8)  # noqa: SLF001
