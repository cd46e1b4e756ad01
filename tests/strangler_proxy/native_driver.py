"""Drives the proxy's per-request code in memory and prints what it wrote, as JSON.

Run twice by ``test_native.py``, once on the compiled hot path and once on pure Python
(``STRANGLER_PURE_PYTHON=1``): both must write the same bytes for every request of the
conformance corpus (hostile framings included), sent whole and byte by byte split in two.
The connections' transports are in memory; each upstream answers every request it is handed
with one of a few canned responses (plain, chunked, HEAD-sized, an error), so nothing here
depends on timing. Request ids are generated randomly and are masked.

    python tests/strangler_proxy/native_driver.py ROUTES.toml out.json

It writes a file rather than stdout: once, in CI, the ~4 MB on a pipe arrived cut short
(the process still exited 0), and the comparison failed on truncated JSON.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from strangler_proxy import native  # noqa: E402
from strangler_proxy.config import ProxyConfig, load_config  # noqa: E402
from strangler_proxy.edge.forward import ProxyState  # noqa: E402
from strangler_proxy.edge.server import ClientConnection  # noqa: E402
from strangler_proxy.edge.upstream import UpstreamConnection, build_pools  # noqa: E402
from strangler_proxy.exchange import NullSink  # noqa: E402
from strangler_proxy.metrics import Metrics  # noqa: E402
from strangler_proxy.routing import RouteTable  # noqa: E402
from tests.strangler_proxy.conformance_corpus import CORPUS  # noqa: E402
from tests.strangler_proxy.shadow_testkit import MemoryTransport  # noqa: E402

RESPONSES = [
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nSet-Cookie: s=1\r\n\r\n"
    b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nLocation: http://127.0.0.1:9/x\r\n\r\n",
    b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy",
]
MASK = re.compile(rb"(X-Request-ID: )[^\r]*")


async def one(config: ProxyConfig, raw: bytes, split: int | None, answer: int) -> dict[str, str]:
    loop = asyncio.get_running_loop()
    metrics = Metrics()
    state = ProxyState(RouteTable(config), build_pools(config, loop, metrics), metrics,
                       NullSink(), loop)
    client_transport = MemoryTransport()
    client = ClientConnection(state, loop)
    client.connection_made(client_transport)  # type: ignore[arg-type]
    upstreams: list[tuple[str, UpstreamConnection, MemoryTransport]] = []
    for name, pool in state.pools.items():
        for _ in range(8):
            conn = UpstreamConnection(pool)
            transport = MemoryTransport()
            conn.connection_made(transport)  # type: ignore[arg-type]
            pool.open += 1
            pool.idle.append(conn)
            upstreams.append((name, conn, transport))
    pieces = [raw] if split is None else [raw[:split], raw[split:]]
    answered: list[object] = []  # the exchanges themselves: an id() could be reused
    for piece in pieces:
        if not client_transport.closing:
            client.data_received(piece)
        for _ in range(50):  # answer every exchange handed to an upstream, in order
            progressed = False
            for _name, conn, _transport in upstreams:
                exchange = conn.exchange
                if exchange is not None and not any(e is exchange for e in answered):
                    answered.append(exchange)
                    conn.data_received(RESPONSES[answer % len(RESPONSES)])
                    answer += 1
                    progressed = True
            await asyncio.sleep(0)
            if not progressed:
                break
    sent = {name: b"".join(b"".join(t.written) for n, _c, t in upstreams if n == name)
            for name in state.pools}
    out = {f"to {name}": MASK.sub(rb"\1-", data).decode("latin-1") for name, data in sent.items()}
    out["to client"] = MASK.sub(rb"\1-", b"".join(client_transport.written)).decode("latin-1")
    out["client closed"] = str(client_transport.closing)
    return out


async def run(config_path: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"mode": native.mode}
    config = load_config(config_path)
    for index, (cls, name, template) in enumerate(CORPUS):
        raw = template.replace(b"{c}", f"{cls}-{name}".encode())
        for split in (None, max(1, len(raw) // 2), 3):
            key = f"{cls}/{name}/split={split}"
            results[key] = await one(config, raw, split, index)
    return results


def main() -> None:
    import uvloop  # noqa: PLC0415 - as the proxy runs

    results = uvloop.run(run(Path(sys.argv[1])))
    out = Path(sys.argv[2])
    partial = out.with_suffix(".partial")
    partial.write_text(json.dumps(results, indent=0, sort_keys=True))
    partial.replace(out)


if __name__ == "__main__":
    main()
