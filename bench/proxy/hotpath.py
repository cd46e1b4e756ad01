"""Python cost of one request through the forwarding path, without sockets.

Drives a real ``ClientConnection`` and ``UpstreamConnection`` with in-memory transports, so
the number is our code (parsing callbacks, routing, headers, metrics) and nothing else.
``--profile`` prints where the time goes.

    python -m bench.proxy.hotpath [--requests 30000] [--routes 50] [--shadow [--sink S]]
                                  [--profile]

``--shadow`` puts the route in shadow mode with the real proxy-side sink (checks, the offer,
its frame) writing into memory instead of the worker's socket: the proxy's own cost of
shadowing, with no worker competing for the CPU. ``--sink`` picks the sink: ``worker`` (the
local shadow worker's, the default), ``remote`` (``proxy_sends_to = "comparator"``: safe
requests as request-only copy records, batched, signed and written every 256 KiB here, as no
timer fires in this loop) or ``remote-whole`` (the same sink made to send whole exchanges,
as it did before the copy records: the before of that change).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from bench.proxy.run import routes_file
from strangler_proxy.config import load_config
from strangler_proxy.edge.forward import ProxyState
from strangler_proxy.edge.server import ClientConnection
from strangler_proxy.edge.upstream import UpstreamConnection, build_pools
from strangler_proxy.exchange import NullSink
from strangler_proxy.metrics import Metrics
from strangler_proxy.routing import RouteTable
from strangler_proxy.shadow.remote import RemoteSink, _RemoteLink
from strangler_proxy.shadow.sink import ProcessSink

REQUEST = (b"GET /api/hit/1/ HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\n"
           b"X-User-Id: u\r\n\r\n")
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Thu, 26 Nov 2026 10:47:58 GMT\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 23\r\nConnection: keep-alive\r\n\r\n"
            b"hello from the backend\n")


class MemoryTransport:
    """Just enough of a transport: writes are kept, everything else is a no-op."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)
        if len(self.written) > 64:
            del self.written[:32]

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 5555) if name == "peername" else None

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None: ...


async def measure(config_path: Path, requests: int, profile: bool,
                  shadow: bool = False, kind: str = "worker") -> float:
    loop = asyncio.get_running_loop()
    config = load_config(config_path)
    metrics = Metrics()
    sink: Any = NullSink()
    if shadow and kind == "worker":
        sink = ProcessSink(config)
        sink._transport = MemoryTransport()  # noqa: SLF001 - the worker's socket, in memory
    elif shadow:
        sink = RemoteSink(config)
        sink._transport = MemoryTransport()  # noqa: SLF001 - the comparator's connection
        sink._link = _RemoteLink(sink)  # noqa: SLF001
        sink._loop = loop  # noqa: SLF001 - batches on a timer (and at FLUSH_BYTES)
        if kind == "remote-whole":
            admit = sink.admit
            sink.admit = lambda route, method: bool(admit(route, method))  # whole exchanges
    state = ProxyState(RouteTable(config), build_pools(config, loop, metrics), metrics,
                       sink, loop)
    client = ClientConnection(state, loop)
    client.connection_made(MemoryTransport())  # type: ignore[arg-type]
    for pool in state.pools.values():
        conn = UpstreamConnection(pool)
        conn.connection_made(MemoryTransport())  # type: ignore[arg-type]
        pool.open += 1
        pool.idle.append(conn)

    def one() -> None:
        client.data_received(REQUEST)
        conn = client.queue[0].conn
        assert conn is not None
        conn.data_received(RESPONSE)

    for _ in range(2000):
        one()
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    started = time.process_time()
    for _ in range(requests):
        one()
    elapsed = time.process_time() - started
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return elapsed / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy.hotpath")
    parser.add_argument("--requests", type=int, default=30000)
    parser.add_argument("--routes", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--shadow", action="store_true",
                        help="the route in shadow mode (100%%), copies offered to the sink")
    parser.add_argument("--monolith", action="store_true",
                        help="the route in monolith mode (the shadow-off of bench.shadow.remote)")
    parser.add_argument("--sink", choices=("worker", "remote", "remote-whole"),
                        default="worker", help="with --shadow: which sink (see above)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "strangler.toml"
        text = routes_file(0, 0, 1, args.routes)
        canary = 'mode = "canary"\npercent = 50\ntarget = "service"\nsticky = "header:X-User-Id"\n'
        hit = text.index('name = "hit"')
        if args.monolith:
            text = text[:hit] + text[hit:].replace(
                canary, 'mode = "monolith"\ntarget = "service"\n')
        if args.shadow:  # the measured route ("hit", the last one) in shadow mode
            text = text[:hit] + text[hit:].replace(
                canary, 'mode = "shadow"\ntarget = "service"\nshadow = { percent = 100 }\n')
            remote = 'marker_secret = "bench"\nproxy_sends_to = "comparator"\n' \
                'comparator_url = "http://127.0.0.1:9"\n' if args.sink != "worker" else ""
            text = f'[shadow]\nstore = "{Path(tmp) / "diffs.sqlite3"}"\n{remote}\n' + text
        path.write_text(text)
        per_request = uvloop.run(measure(path, args.requests, args.profile, args.shadow,
                                         args.sink))
    print(f"{per_request:.1f} us of CPU per request ({args.routes} routes, "
          f"shadow {'on, sink ' + args.sink if args.shadow else 'off'}"
          f"{', monolith mode' if args.monolith else ''}, "
          f"{args.requests} requests, profiler {'on' if args.profile else 'off'})")


if __name__ == "__main__":
    main()
