"""A normal client's latency while slow clients attack, our proxy beside nginx.

    python -m bench.proxy.slowloris [--heads 400] [--bodies 200] [--readers 300] [--seconds 30]

For each proxy in turn (nginx with its defaults plus the timeouts of our defaults, then
``strangler proxy`` with its defaults) in front of the same nginx-served backend: open
``--heads`` slowloris connections (a header line every second, never finished) and
``--bodies`` slow POSTs (a body byte every second), each reconnecting when cut off, and
``--readers`` slow readers (each asks for a 4 MiB answer with a 4 KiB receive buffer and
reads none of it: more of them than our upstream pool's 256 connections), and meanwhile
let one normal client send sequential keep-alive-less GETs for ``--seconds``.
Prints the normal client's p50/p99/max and error count, how many slow connections were cut,
the proxy's open descriptors and resident memory (all its processes, sampled every 0.25 s:
at the start and at the peak), and the load average (the figures are only comparable within
one run). The goal from issue 12: the normal client's p99 under 50 ms. Keep heads + bodies +
readers under 1,000: past `max_client_connections` (1,024) our proxy answers new connections
503, the normal client's too.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.proxy.run import (
    backend_server,
    free_port,
    nginx_conf,
    nginx_proxy_server,
    process,
    routes_file,
)

NGINX_SLOW = """
    client_header_timeout 10s;
    client_body_timeout 10s;
    keepalive_timeout 75s;
"""


BIG_PATH = "/big/answer"  # 4 MiB, served by the backend from a file
BIG_BYTES = 4 * 1024 * 1024


class Attack(threading.Thread):
    """Slow heads, slow bodies and slow readers, reconnecting when cut; counts the cuts."""

    def __init__(self, port: int, heads: int, bodies: int, readers: int = 0) -> None:
        super().__init__(daemon=True)
        self.port, self.heads, self.bodies, self.readers = port, heads, bodies, readers
        self.stop = threading.Event()
        self.cut = 0
        self.failed_connects = 0
        self.held: list[socket.socket] = []

    def _open_reader(self) -> None:
        """A client that asks for the big answer and never reads it (held until the end)."""
        try:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(2)
            sock.connect(("127.0.0.1", self.port))
            sock.sendall(f"GET {BIG_PATH} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        except OSError:
            self.failed_connects += 1
            return
        self.held.append(sock)

    def _open(self, selector: selectors.BaseSelector, body: bool) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            sock.setblocking(False)
            sock.send(b"POST /api/hit/1/ HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n"
                      if body else b"GET /api/hit/1/ HTTP/1.1\r\nHost: a\r\n")
        except OSError:
            self.failed_connects += 1
            return
        selector.register(sock, selectors.EVENT_READ, body)

    def run(self) -> None:
        for _ in range(self.readers):
            self._open_reader()
        with selectors.DefaultSelector() as selector:
            for index in range(self.heads + self.bodies):
                self._open(selector, index >= self.heads)
            next_drip = time.monotonic() + 1.0
            while not self.stop.is_set():
                for key, _ in selector.select(timeout=0.1):
                    sock: socket.socket = key.fileobj  # type: ignore[assignment]
                    with contextlib.suppress(OSError):
                        if sock.recv(4096):
                            continue
                    selector.unregister(sock)
                    sock.close()
                    self.cut += 1
                    self._open(selector, key.data)
                if time.monotonic() >= next_drip:
                    next_drip += 1.0
                    for key in list(selector.get_map().values()):
                        with contextlib.suppress(OSError):
                            key.fileobj.send(b"x" if key.data else b"X-A: b\r\n")  # type: ignore[union-attr]
            for key in list(selector.get_map().values()):
                key.fileobj.close()  # type: ignore[union-attr]
        for sock in self.held:
            sock.close()


def normal_client(port: int, seconds: float) -> tuple[list[float], int]:
    """Sequential GETs for ``seconds``: latencies (ms) and errors (anything but a 200)."""
    latencies, errors = [], 0
    request = b"GET /api/hit/1/ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        started = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(request)
                got = b""
                while chunk := sock.recv(65536):
                    got += chunk
            ok = got.startswith(b"HTTP/1.1 200")
        except OSError:
            ok = False
        latencies.append((time.perf_counter() - started) * 1000)
        errors += not ok
        time.sleep(0.01)
    return latencies, errors


class Footprint(threading.Thread):
    """Open descriptors and resident KiB of one process group, sampled until stopped."""

    def __init__(self, group: int) -> None:
        super().__init__(daemon=True)
        self.group = group
        self.stop = threading.Event()
        self.first = self.sample()
        self.peak_fds, self.peak_kib = self.first

    def sample(self) -> tuple[int, int]:
        fds = kib = 0
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (proc / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[2]) != self.group:
                    continue
                fds += len(os.listdir(proc / "fd"))
                for line in (proc / "status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        kib += int(line.split()[1])
        return fds, kib

    def run(self) -> None:
        while not self.stop.is_set():
            fds, kib = self.sample()
            self.peak_fds, self.peak_kib = max(self.peak_fds, fds), max(self.peak_kib, kib)
            self.stop.wait(0.25)

    def summary(self) -> str:
        fds, kib = self.first
        return (f"descriptors {fds} -> peak {self.peak_fds}, resident {kib / 1024:.0f} -> "
                f"peak {self.peak_kib / 1024:.0f} MiB")


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))] if ordered else 0.0


def check_big_answer(name: str, port: int) -> None:
    """The slow readers' answer must really be the 4 MiB (not a 403 or 404)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {BIG_PATH} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                     .encode())
        got = bytearray()
        while chunk := sock.recv(1 << 20):
            got += chunk
    head, _, body = bytes(got).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") or len(body) != BIG_BYTES:
        sys.exit(f"{name}: {BIG_PATH} answered {head[:40]!r} with {len(body)} bytes, not "
                 f"{BIG_BYTES}: the slow readers would measure nothing")


def attack(name: str, port: int, group: int, args: argparse.Namespace) -> None:
    if args.readers:
        check_big_answer(name, port)
    load = os.getloadavg()[0]
    footprint = Footprint(group)
    footprint.start()
    attacker = Attack(port, args.heads, args.bodies, args.readers)
    attacker.start()
    time.sleep(2.0)  # let the slow connections pile up first
    latencies, errors = normal_client(port, args.seconds)
    attacker.stop.set()
    attacker.join(10)
    footprint.stop.set()
    footprint.join(5)
    print(f"{name:10s} normal client: {len(latencies)} requests, {errors} errors, "
          f"p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms, "
          f"max {max(latencies):.1f} ms; slow connections cut: {attacker.cut}, "
          f"refused: {attacker.failed_connects}; {footprint.summary()}; load average "
          f"{load:.2f}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy.slowloris",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heads", type=int, default=400)
    parser.add_argument("--bodies", type=int, default=200)
    parser.add_argument("--readers", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    if args.heads + args.bodies + args.readers >= 1000:
        parser.error("keep --heads + --bodies + --readers under 1000: past the proxy's "
                     "max_client_connections (1024) every new connection is answered 503, "
                     "the normal client's too")
    with tempfile.TemporaryDirectory(prefix="bench-slowloris-") as tmp, \
            contextlib.ExitStack() as stack:
        work = Path(tmp)
        (work / "big").mkdir()
        (work / "big" / "answer").write_bytes(os.urandom(BIG_BYTES))
        for path in (work, work / "big", work / "big" / "answer"):  # nginx's workers: nobody
            path.chmod(0o755)
        ports = {k: free_port() for k in ("backend", "nginx", "ours", "admin")}
        backend = backend_server(ports["backend"]).replace(
            "location / {", f"location /big/ {{ alias {work}/big/; }}\n        location / {{", 1)
        stack.enter_context(process(["nginx", "-c", str(nginx_conf(
            work, "backend", backend))], ports["backend"], work / "backend.log"))
        front = stack.enter_context(process(["nginx", "-c", str(nginx_conf(
            work, "proxy", NGINX_SLOW + nginx_proxy_server(ports["nginx"], ports["backend"])))],
            ports["nginx"], work / "nginx.log"))
        config = work / "ours.toml"
        config.write_text(routes_file(ports["ours"], ports["admin"], ports["backend"], 1))
        ours = stack.enter_context(process([sys.executable, "-m", "strangler.cli", "proxy",
                                            "--config", str(config), "--workers", "1"],
                                           ports["ours"], work / "ours.log"))
        attack("nginx", ports["nginx"], front.pid, args)
        attack("strangler", ports["ours"], ours.pid, args)


if __name__ == "__main__":
    main()
