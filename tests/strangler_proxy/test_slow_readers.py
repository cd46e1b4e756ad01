"""Clients that read their answers slowly, or never, must not cost anyone else anything.

The slow-read attack (slowhttptest -X): ask for a large answer and read it a byte at a time,
or not at all. A proxy that passes the client's backpressure on to the upstream holds an
upstream connection per such client, so a few dozen of them empty the pool and everyone else
waits for a connection (504 at ``pool_timeout``). Like nginx's ``proxy_buffering``, the proxy
keeps reading the upstream answer into a spool (the transport's buffer, then a temporary file
up to ``max_response_spool_bytes``) and gives the connection back; ``send_timeout`` closes a
client that accepts nothing for that long. Real sockets on 127.0.0.1, small receive buffers.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.strangler_proxy.proxy_harness import (
    Request,
    Running,
    raw_exchange,
    response,
    running_proxy,
)

BIG = bytes(range(256)) * 4096 * 4  # 4 MiB, not all one byte (a wrong offset shows)
SLOW_READERS = 24
POOL = "max_connections = 4\npool_timeout = 1\n"


async def big_or_small(req: Request, transport: asyncio.Transport) -> None:
    if req.url.startswith("/big"):
        transport.write(response(200, BIG))
    else:
        transport.write(response(200, b"small"))


def slow_reader(port: int, path: str = "/big") -> socket.socket:
    """A client with a tiny receive window that asks for ``path`` and reads nothing yet."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    return sock


def read_answer(sock: socket.socket, pace: float = 0.0, timeout: float = 20.0) -> bytes:
    """Read one Content-Length answer, ``pace`` seconds between 64 KiB reads."""
    data = bytearray()
    deadline = time.monotonic() + timeout
    length = None
    while time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        if length is None and b"\r\n\r\n" in data:
            head = bytes(data).split(b"\r\n\r\n", 1)[0]
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = len(head) + 4 + int(value)
        if length is not None and len(data) >= length:
            break
        if pace:
            time.sleep(pace)
    return bytes(data)


def read_until(sock: socket.socket, done: bytes = b"", timeout: float = 20.0) -> bytes:
    """Read after a pause (so the proxy spools meanwhile) until the connection ends,
    ``done`` arrives or ``timeout`` passes, a little at a time like a slow client."""
    time.sleep(1.0)
    got = bytearray()
    deadline = time.monotonic() + timeout
    with contextlib.suppress(TimeoutError):
        while not (done and done in got) and time.monotonic() < deadline and \
                (chunk := sock.recv(65536)):
            got += chunk
            time.sleep(0.001)
    return bytes(got)


def body_of(answer: bytes) -> bytes:
    return answer.split(b"\r\n\r\n", 1)[1]


@contextlib.contextmanager
def small_pool_proxy(tmp_path: Path, proxy: str) -> Iterator[Running]:
    """A proxy whose monolith pool has 4 connections and a 1 s wait for one."""
    with running_proxy(tmp_path, {"monolith": big_or_small}, proxy=proxy) as run:
        run.config_path.write_text(run.config_path.read_text().replace(
            "read_timeout = 2\n", "read_timeout = 30\n" + POOL))
        assert run.loop.call(run.app.reload)[0]
        yield run


def test_slow_readers_do_not_hold_upstream_connections(tmp_path: Path) -> None:
    with small_pool_proxy(tmp_path, "send_timeout = 60\n") as run:
        # given many more clients than pooled connections, each asking for 4 MiB and reading
        # nothing
        readers = [slow_reader(run.port) for _ in range(SLOW_READERS)]
        try:
            time.sleep(1.0)
            # when a normal client asks meanwhile
            answers, slowest = [], 0.0
            for _ in range(20):
                started = time.monotonic()
                answers.append(raw_exchange(run.port, b"GET /small HTTP/1.1\r\nHost: a\r\n"
                                            b"Connection: close\r\n\r\n", timeout=10))
                slowest = max(slowest, time.monotonic() - started)
            # then it gets every answer, none waiting for a pooled connection
            assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 20, \
                answers[0][:200]
            assert slowest < 0.9, f"slowest {slowest * 1000:.0f} ms (pool_timeout is 1 s)"
            # and every slow reader still gets its whole answer, byte for byte, when it reads
            for sock in readers[:3]:
                assert body_of(read_answer(sock)) == BIG
        finally:
            for sock in readers:
                sock.close()


def test_a_slow_reader_gets_every_byte_in_order(tmp_path: Path) -> None:
    with running_proxy(tmp_path, {"monolith": big_or_small}) as run:
        sock = slow_reader(run.port)
        with sock:
            time.sleep(0.5)  # the answer is spooled meanwhile
            answer = read_answer(sock, pace=0.002)
            # a second answer on the same connection comes after the first, whole
            sock.sendall(b"GET /big?again HTTP/1.1\r\nHost: a\r\n\r\n")
            second = read_answer(sock, pace=0.001)
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert hashlib.sha256(body_of(answer)).digest() == hashlib.sha256(BIG).digest()
    assert hashlib.sha256(body_of(second)).digest() == hashlib.sha256(BIG).digest()


def test_pipelined_answers_come_whole_and_in_order_and_close_waits_for_them(
        tmp_path: Path) -> None:
    with running_proxy(tmp_path, {"monolith": big_or_small}) as run:
        sock = slow_reader(run.port, "/big?1")
        with sock:
            # three more requests on the same connection, the last asking to close, and a
            # fourth after it that must not be forwarded
            sock.sendall(b"GET /small HTTP/1.1\r\nHost: a\r\n\r\n"
                         b"GET /big?2 HTTP/1.1\r\nHost: a\r\n\r\n"
                         b"GET /small HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                         b"GET /never HTTP/1.1\r\nHost: a\r\n\r\n")
            got = read_until(sock, timeout=30)
    answers = got.split(b"HTTP/1.1 200 OK\r\n")[1:]
    bodies = [a.split(b"\r\n\r\n", 1)[1] for a in answers]
    assert [len(b) for b in bodies] == [len(BIG), len(b"small"), len(BIG), len(b"small")]
    assert bodies[0] == BIG
    assert bodies[2] == BIG
    assert [r.url for r in run.upstreams["monolith"].requests] == \
        ["/big?1", "/small", "/big?2", "/small"]


def test_a_client_that_reads_nothing_is_closed_after_send_timeout(tmp_path: Path) -> None:
    with running_proxy(tmp_path, {"monolith": big_or_small}, proxy="send_timeout = 1.5\n") as run:
        sock = slow_reader(run.port)
        with sock:
            started = time.monotonic()
            time.sleep(3.0)  # reads nothing for longer than send_timeout
            # then the proxy has closed it: what the socket holds ends before the answer does
            got = 0
            with contextlib.suppress(ConnectionResetError, TimeoutError):
                while chunk := sock.recv(65536):
                    got += len(chunk)
            closed_after = time.monotonic() - started
        assert got < len(BIG)
        assert closed_after < 6.0
        assert run.app.state is not None
        assert run.app.state.metrics.client_timeouts.get("send") == 1


def test_spool_cap_zero_passes_backpressure_to_the_upstream(tmp_path: Path) -> None:
    # max_response_spool_bytes = 0: no spool, the upstream connection waits for the client
    with small_pool_proxy(tmp_path, "max_response_spool_bytes = 0\n") as run:
        readers = [slow_reader(run.port) for _ in range(6)]
        try:
            time.sleep(0.5)
            got = raw_exchange(run.port, b"GET /small HTTP/1.1\r\nHost: a\r\n"
                               b"Connection: close\r\n\r\n", timeout=10)
            # the pool of 4 is held by the readers: this request waits and gets 504
            assert got.startswith(b"HTTP/1.1 504"), got[:100]
            for sock in readers[:2]:
                assert body_of(read_answer(sock)) == BIG
        finally:
            for sock in readers:
                sock.close()


def test_no_temporary_file_means_the_upstream_waits_and_the_answer_is_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a $TMPDIR that cannot take a file
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    with running_proxy(tmp_path, {"monolith": big_or_small}) as run:
        sock = slow_reader(run.port)
        with sock:
            time.sleep(0.5)
            # then the answer waits in the upstream, not in the proxy's memory
            state = run.app.state
            assert state is not None
            held = run.loop.call(lambda: max(
                c.transport.get_write_buffer_size() for c in state.clients if c.transport))
            assert held < 512 * 1024, f"{held} bytes held in memory for one slow reader"
            # and the slow reader still gets every byte
            assert body_of(read_answer(sock)) == BIG


def test_a_full_disk_cuts_the_spooled_answer_and_nobody_else_notices(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    # given a disk that takes no spooled byte
    monkeypatch.setattr(os, "pwrite", full)
    with running_proxy(tmp_path, {"monolith": big_or_small}) as run:
        sock = slow_reader(run.port)
        with sock:
            time.sleep(0.5)
            # then the slow reader's answer is cut short and its connection closed
            got = 0
            with contextlib.suppress(ConnectionResetError, TimeoutError):
                while chunk := sock.recv(65536):
                    got += len(chunk)
            assert 0 < got < len(BIG)
        # and it is not counted as the upstream's failure
        assert run.app.state is not None
        assert dict(run.app.state.metrics.upstream_errors) == {}
        # and a normal client is served as ever
        assert raw_exchange(run.port, b"GET /small HTTP/1.1\r\nHost: a\r\n"
                            b"Connection: close\r\n\r\n").startswith(b"HTTP/1.1 200 OK")


async def sized(req: Request, transport: asyncio.Transport) -> None:
    """/n?SIZE answers SIZE bytes of "a"; /fail answers a head and 10 of 1,000 bytes, then
    closes; /ws/ switches protocols and sends a frame."""
    if req.url.startswith("/fail"):
        await asyncio.sleep(0.3)
        transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"y" * 10)
        transport.close()
    elif req.url.startswith("/ws/"):
        transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\n\r\nserver-frame")
    else:
        size = int(req.url.split("?", 1)[1]) if "?" in req.url else len(BIG)
        transport.write(response(200, BIG[:size] if size <= len(BIG) else b"a" * size))


def test_an_upstream_failing_mid_answer_keeps_the_earlier_pipelined_answer(
        tmp_path: Path) -> None:
    with running_proxy(tmp_path, {"monolith": sized}) as run:
        sock = slow_reader(run.port)
        with sock:
            # a big answer (spooled, complete upstream-side), then one whose upstream fails
            sock.sendall(b"GET /fail HTTP/1.1\r\nHost: a\r\n\r\n")
            time.sleep(1.5)
            got = bytearray()
            with contextlib.suppress(TimeoutError, ConnectionResetError):
                while chunk := sock.recv(65536):
                    got += chunk
    answers = bytes(got).split(b"HTTP/1.1 200 OK\r\n")
    # then the first answer arrives whole, and the failed one cut short before the close
    assert len(answers) == 3, [a[:60] for a in answers]
    assert body_of(answers[1]) == BIG
    assert b"Content-Length: 1000\r\n" in answers[2]
    assert body_of(answers[2]) == b"y" * 10


def test_a_websocket_pipelined_behind_a_spooled_answer_gets_everything(
        tmp_path: Path) -> None:
    routes = '[[routes]]\nname = "live"\nmatch = { path_prefix = "/ws/" }\nwebsocket = true\n'
    with running_proxy(tmp_path, {"monolith": sized}, routes) as run:
        sock = slow_reader(run.port)
        with sock:
            sock.sendall(b"GET /ws/chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                         b"Upgrade: websocket\r\nSec-WebSocket-Key: x\r\n"
                         b"Sec-WebSocket-Version: 13\r\n\r\n")
            got = read_until(sock, b"server-frame")
    big, _, switched = got.partition(b"HTTP/1.1 101 ")
    assert body_of(big) == BIG
    assert switched.endswith(b"server-frame")


class PacedTransport:
    """A client transport whose buffer the test drains by hand; it tells the protocol to
    pause past 64 KiB and to resume under 16 KiB, as asyncio's transports do."""

    def __init__(self) -> None:
        self.protocol: Any = None
        self.unsent = 0
        self.sent = bytearray()
        self.paused = False

    def write(self, data: bytes) -> None:
        self.sent += data
        self.unsent += len(data)
        if self.unsent > 64 * 1024 and not self.paused:
            self.paused = True
            self.protocol.pause_writing()

    def drain(self, down_to: int) -> None:
        self.unsent = min(self.unsent, down_to)
        if self.paused and self.unsent < 16 * 1024:
            self.paused = False
            self.protocol.resume_writing()

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else None

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


def test_the_last_spooled_slice_pausing_the_client_keeps_later_bytes_off_memory(
        tmp_path: Path) -> None:
    # Deterministic: a spool of 60 KiB sent on a resume at 10 KiB unsent fills the buffer
    # past 64 KiB with its last slice, so the client is paused again just as the spool is
    # empty. What is written next (1 MiB) must still be spooled, not held in memory.
    from strangler_proxy.edge.server import ClientConnection

    with running_proxy(tmp_path, {"monolith": sized}) as run:
        state = run.app.state
        assert state is not None
        transport = PacedTransport()

        def scenario() -> tuple[int, bytes]:
            conn = ClientConnection(state, asyncio.get_running_loop())
            transport.protocol = conn
            conn.connection_made(transport)  # type: ignore[arg-type]
            conn.write(b"a" * (70 * 1024))  # the client is slow: paused
            conn.write(b"b" * (60 * 1024))  # spooled
            transport.drain(10 * 1024)  # resumed: the spool goes out, and pauses it again
            conn.write(b"c" * (1024 * 1024))  # while paused with the spool just emptied
            held = transport.unsent
            for _ in range(100):  # the client reads everything
                transport.drain(0)
            conn.connection_lost(None)
            return held, bytes(transport.sent)

        held, sent = run.loop.call(scenario)
    assert held < 256 * 1024, f"{held} bytes held in memory"
    assert sent == b"a" * (70 * 1024) + b"b" * (60 * 1024) + b"c" * (1024 * 1024)
