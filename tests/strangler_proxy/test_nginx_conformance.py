"""Differential conformance: the raw corpus through our proxy and through Debian's nginx.

Both forward to byte-recording upstreams (one each) that parse what they receive the way an
origin server does. For every case our proxy must either refuse it (nothing forwarded) or
forward exactly the requests nginx forwards, read the same way: same methods, same
(normalised) paths, same bodies, nothing hidden. Where we knowingly differ from nginx the
case is listed in :data:`KNOWN_DIFFERENCES` with the reason, and in ``docs/proxy.md``.

nginx runs from a generated config in a temp dir on a free port, with the settings that
match our defaults (request buffering on, 64 KiB header lines, no body limit); it is
stopped at the end. The test is skipped when nginx is not installed (`make sysdeps`).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httptools
import pytest

from strangler_proxy.headers import normalize_path
from tests.strangler_proxy.conformance_corpus import CORPUS
from tests.strangler_proxy.proxy_harness import LoopThread, free_port, running_proxy

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "")

# case name -> why we differ from nginx (only ever: we refuse where nginx forwards, or we
# forward the same request with a different but equivalent framing). Mirrored in
# docs/proxy.md, "Differences from nginx".
KNOWN_DIFFERENCES: dict[str, str] = {
    "te-tab-value": "`Transfer-Encoding:<TAB>chunked`: a tab is optional whitespace (RFC 9110 "
    "§5.6.3), so the value is `chunked`; nginx compares the raw value and answers 501. We "
    "forward the same body, re-framed.",
}


@dataclass
class Seen:
    """What a recording upstream read: (method, path, body) per request, and parse errors."""

    requests: list[tuple[str, str, bytes]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class _Recorder(asyncio.Protocol):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        while data:
            try:
                self.parser.feed_data(data)
                return
            except httptools.HttpParserUpgrade as upgrade:
                # we answer 200, not 101: what follows is read as the next request
                data = data[upgrade.args[0]:]
                self.parser = httptools.HttpRequestParser(self)
            except httptools.HttpParserError as exc:
                self.seen.errors.append(f"{exc}")
                assert self.transport is not None
                self.transport.close()
                return

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode()
        self.seen.requests.append((method, self.url.decode("latin-1"), self.body))
        self.url, self.body = b"", b""
        assert self.transport is not None
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def _nginx_conf(tmp: Path, listen: int, upstream: int) -> str:
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / sub).mkdir(exist_ok=True)
    return f"""
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size 0;
    large_client_header_buffers 4 64k;
    upstream up {{ server 127.0.0.1:{upstream}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{listen};
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
        }}
    }}
}}
"""


def _send(port: int, raw: bytes, timeout: float = 1.5) -> bytes:
    """Send ``raw`` on a fresh connection; what comes back until close or a quiet timeout."""
    got = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(raw)
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                got += chunk
    return got


def _run_corpus(port: int, seen: Seen) -> list[tuple[bytes, list[tuple[str, str, bytes]],
                                                     list[str]]]:
    """Each case in turn: (status line, requests the upstream read for it, parse errors)."""
    out = []
    for index, (_, _, raw) in enumerate(CORPUS):
        before, errors_before = len(seen.requests), len(seen.errors)
        answer = _send(port, raw.replace(b"{c}", b"c%03d" % index))
        time.sleep(0.02)  # let the upstream read what was forwarded
        out.append((answer.split(b"\r\n", 1)[0], seen.requests[before:],
                    seen.errors[errors_before:]))
    return out


def _same_reading(ours: list[tuple[str, str, bytes]],
                  theirs: list[tuple[str, str, bytes]]) -> bool:
    def key(r: tuple[str, str, bytes]) -> tuple[str, bytes, bytes]:
        path = r[1].encode("latin-1").partition(b"?")[0]
        return r[0], normalize_path(path) if path.startswith(b"/") else path, r[2]
    return [key(r) for r in ours] == [key(r) for r in theirs]


@pytest.mark.skipif(not NGINX, reason="nginx is not installed: `make sysdeps` (nginx-light)")
def test_corpus_is_refused_or_forwarded_as_nginx_reads_it(tmp_path: Path) -> None:
    # given nginx and our proxy, each in front of its own recording upstream
    loop = LoopThread()
    ours_seen, nginx_seen = Seen(), Seen()
    servers = []
    try:
        for seen in (ours_seen, nginx_seen):
            async def start(s: Seen = seen) -> asyncio.Server:
                return await asyncio.get_running_loop().create_server(
                    lambda: _Recorder(s), "127.0.0.1", 0)
            servers.append(loop.run(start()))
        ports = [s.sockets[0].getsockname()[1] for s in servers]
        nginx_port = free_port()
        conf = tmp_path / "nginx.conf"
        conf.write_text(_nginx_conf(tmp_path, nginx_port, ports[1]))
        nginx = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(conf)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 start_new_session=True)
        try:
            _wait_port(nginx_port, nginx)
            with running_proxy(tmp_path, {}, upstream_urls={
                    "monolith": f"http://127.0.0.1:{ports[0]}"}) as run:
                # when the corpus is sent through both at once
                with ThreadPoolExecutor(2) as pool:
                    ours_f = pool.submit(_run_corpus, run.port, ours_seen)
                    nginx_f = pool.submit(_run_corpus, nginx_port, nginx_seen)
                    ours, theirs = ours_f.result(), nginx_f.result()
        finally:
            nginx.terminate()
            nginx.wait(10)
            assert nginx.stderr is not None
            nginx.stderr.close()
    finally:
        for server in servers:
            loop.call(server.close)
        loop.close()
    # then each case is refused by us, or read by the upstream as nginx's forward is read
    table: Counter[tuple[str, str]] = Counter()
    bad: list[str] = []
    differ: list[str] = []
    for (cls, name, _), (status, reqs, errors), (n_status, n_reqs, n_errors) in zip(
            CORPUS, ours, theirs, strict=True):
        ours_kind = "refused" if not reqs and not errors else "forwarded"
        nginx_kind = "refused" if not n_reqs and not n_errors else "forwarded"
        same = _same_reading(reqs, n_reqs) and not errors
        table[(cls, f"ours {ours_kind}, nginx {nginx_kind}"
               + (", same reading" if ours_kind == nginx_kind == "forwarded" and same else ""))] \
            += 1
        if ours_kind != nginx_kind:
            differ.append(f"{cls}/{name}: ours {status.decode(errors='replace')}, nginx "
                          f"{n_status.decode(errors='replace')}")
        if errors:
            bad.append(f"{cls}/{name}: the upstream could not parse our forward: {errors}")
        elif reqs and not same and name not in KNOWN_DIFFERENCES:
            bad.append(f"{cls}/{name}: ours {status!r} forwarded {reqs!r}; nginx {n_status!r} "
                       f"forwarded {n_reqs!r}")
    report = "\n".join(f"{cls:11} {outcome}: {n}" for (cls, outcome), n in sorted(table.items()))
    print("\n" + report + "\n" + "\n".join(differ))  # noqa: T201 - quoted in docs/proxy.md
    (tmp_path / "conformance.txt").write_text(report)
    assert len(CORPUS) >= 100
    assert bad == [], "\n".join(bad)


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            assert proc.stderr is not None
            pytest.fail(f"nginx exited: {proc.stderr.read().decode(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    pytest.fail("nginx did not start listening")
