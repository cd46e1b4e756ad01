"""Hundreds of slow clients at once must not cost a normal client anything.

A bounded version of the attack in ``bench/proxy/slowloris.py``: slowloris heads (a header
line now and then, never finished) and slow POSTs (a body byte now and then), reconnecting
when cut off, against a proxy whose upstream pool has only a few connections. Meanwhile a
normal client asks steadily and must get every answer, without error and quickly; the slow
connections must be closed on time, and the proxy's descriptors and memory stay bounded.
"""

from __future__ import annotations

import os
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.strangler_proxy.proxy_harness import answer_with, raw_exchange, running_proxy

HEADER_TIMEOUT = 2.0
LIMITS = (f"client_header_timeout = {HEADER_TIMEOUT}\nclient_body_min_rate = 1024\n"
          "keepalive_timeout = 3\nmax_client_connections = 1024\n")
SLOW_HEADS = 200
SLOW_BODIES = 100
ATTACK_SECONDS = 9.0


@dataclass
class Attack:
    """Slow clients in one thread; records how long each lived before the proxy cut it."""

    port: int
    lifetimes: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def open(self, selector: selectors.BaseSelector, slow_body: bool) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.setblocking(False)
        head = b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n" \
            if slow_body else b"GET / HTTP/1.1\r\nHost: a\r\n"
        sock.sendall(head)
        selector.register(sock, selectors.EVENT_READ, (time.monotonic(), slow_body))

    def run(self) -> None:
        with selectors.DefaultSelector() as selector:
            for index in range(SLOW_HEADS + SLOW_BODIES):
                self.open(selector, slow_body=index >= SLOW_HEADS)
            next_drip = time.monotonic()
            while not self.stop.is_set():
                for key, _ in selector.select(timeout=0.1):
                    sock: socket.socket = key.fileobj  # type: ignore[assignment]
                    opened, slow_body = key.data
                    try:
                        data = sock.recv(4096)
                    except OSError:
                        data = b""
                    if data and not data.startswith(b"HTTP/1.1 408"):
                        continue  # not an answer we expect: keep reading until close
                    self.lifetimes.append(time.monotonic() - opened)
                    selector.unregister(sock)
                    sock.close()
                    self.open(selector, slow_body)  # a real attacker comes back
                if time.monotonic() >= next_drip:  # one byte per connection every 0.5 s
                    next_drip += 0.5
                    for key in list(selector.get_map().values()):
                        _, slow_body = key.data
                        try:
                            key.fileobj.send(b"x" if slow_body else b"X-A: b\r\n")  # type: ignore[union-attr]
                        except OSError:
                            pass
            for key in list(selector.get_map().values()):
                key.fileobj.close()  # type: ignore[union-attr]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_normal_client_is_served_while_hundreds_of_slow_clients_attack(
        tmp_path: Path) -> None:
    with running_proxy(tmp_path, {"monolith": answer_with("m")}, proxy=LIMITS) as run:
        run.config_path.write_text(run.config_path.read_text().replace(
            "read_timeout = 2\n", "read_timeout = 2\nmax_connections = 8\n"))
        assert run.loop.call(run.app.reload)[0]
        assert run.app.state is not None
        state = run.app.state
        fds_before, rss_before = open_fds(), rss_bytes()
        attack = Attack(run.port)
        attacker = threading.Thread(target=attack.run, daemon=True)
        # given hundreds of slow heads and slow bodies
        attacker.start()
        time.sleep(0.5)
        # when a normal client asks steadily
        latencies, answers = [], []
        ends = time.monotonic() + ATTACK_SECONDS
        peak_clients = peak_fds = 0
        while time.monotonic() < ends:
            started = time.monotonic()
            got = raw_exchange(run.port, b"GET /ok HTTP/1.1\r\nHost: a\r\n"
                               b"Connection: close\r\n\r\n", timeout=10)
            latencies.append(time.monotonic() - started)
            answers.append(got[:12])
            peak_clients = max(peak_clients, len(state.clients))
            peak_fds = max(peak_fds, open_fds())
            time.sleep(0.02)
        attack.stop.set()
        attacker.join(10)
        time.sleep(1.0)
        clients_after = len(state.clients)
        growth = rss_bytes() - rss_before
        fds_after = open_fds()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    # then every answer is a 200, none slow
    assert set(answers) == {b"HTTP/1.1 200"}, {a for a in answers if a != b"HTTP/1.1 200"}
    assert len(answers) > 50
    assert p99 < 1.0, f"p99 {p99 * 1000:.0f} ms"  # generous: a shared 2-core machine
    # the slow connections were cut on time (heads at the header timeout, bodies once
    # their rate fell behind: 2 s grace + the ~10 bytes sent, plus a sweep and a drip)
    assert len(attack.lifetimes) >= SLOW_HEADS + SLOW_BODIES
    assert max(attack.lifetimes) < HEADER_TIMEOUT + 2.0
    assert min(attack.lifetimes) > HEADER_TIMEOUT - 0.1
    # descriptors and memory stay bounded: ~2 per attacker (both ends live in this process)
    assert peak_clients <= SLOW_HEADS + SLOW_BODIES + 10
    assert peak_fds - fds_before <= 2 * (SLOW_HEADS + SLOW_BODIES) + 50
    assert clients_after <= 2
    assert fds_after - fds_before <= 20
    assert growth < 64 * 1024 * 1024


def test_one_address_cannot_take_every_connection(tmp_path: Path) -> None:
    proxy = LIMITS + "max_connections_per_ip = 3\n"
    with running_proxy(tmp_path, {"monolith": answer_with("m")}, proxy=proxy) as run:
        # given three idle connections from 127.0.0.1
        held = [socket.create_connection(("127.0.0.1", run.port), timeout=5) for _ in range(3)]
        try:
            time.sleep(0.2)
            # when a fourth comes from the same address, it is refused with a 503
            refused = raw_exchange(run.port, b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n")
            assert refused.startswith(b"HTTP/1.1 503"), refused[:80]
            assert b"max_connections_per_ip = 3" in refused
            # while another address is served
            with socket.create_connection(("127.0.0.1", run.port), timeout=5,
                                          source_address=("127.0.0.2", 0)) as other:
                other.sendall(b"GET /ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                assert other.recv(65536).startswith(b"HTTP/1.1 200")
            # and once one of the three closes, the address may connect again
            held.pop().close()
            time.sleep(0.2)
            again = raw_exchange(run.port, b"GET /ok HTTP/1.1\r\nHost: a\r\n"
                                 b"Connection: close\r\n\r\n")
            assert again.startswith(b"HTTP/1.1 200"), again[:80]
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.2)
        assert run.app.state is not None
        assert run.app.state.per_ip == {}  # every count went back when its connection closed
