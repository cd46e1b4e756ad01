"""The Python ceiling: a bare asyncio + httptools + uvloop forwarder with no features at all.

No routing, no header rules, no timeouts, no metrics; GET-only, Content-Length responses
only. It exists so the benchmark can show how much of the gap to nginx is Python itself and
how much is our features. Not for use in front of anything.

    python -m bench.proxy.bare LISTEN_PORT BACKEND_PORT
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import httptools
import uvloop


class Upstream(asyncio.Protocol):
    def __init__(self, client: Client) -> None:
        self.client = client
        self.parser = httptools.HttpResponseParser(self)
        self.transport: Any = None
        self.out: list[bytes] = []
        self.headers: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)
        if self.out:
            self.client.transport.write(b"".join(self.out))
            self.out = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append(b"%s: %s\r\n" % (name, value))

    def on_headers_complete(self) -> None:
        self.out.append(b"HTTP/1.1 %d OK\r\n%s\r\n" % (self.parser.get_status_code(),
                                                      b"".join(self.headers)))
        self.headers = []

    def on_body(self, body: bytes) -> None:
        self.out.append(body)

    def on_message_complete(self) -> None:
        self.client.done()


class Client(asyncio.Protocol):
    def __init__(self, backend: int) -> None:
        self.backend = backend
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None
        self.upstream: Upstream | None = None
        self.url = b""
        self.headers: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append(b"%s: %s\r\n" % (name, value))

    def on_message_complete(self) -> None:
        head = b"GET %s HTTP/1.1\r\n%s\r\n" % (self.url, b"".join(self.headers))
        self.headers = []
        self.transport.pause_reading()
        if self.upstream is None:
            asyncio.get_running_loop().create_task(self.connect(head))
        else:
            self.upstream.transport.write(head)

    async def connect(self, head: bytes) -> None:
        loop = asyncio.get_running_loop()
        _, self.upstream = await loop.create_connection(lambda: Upstream(self), "127.0.0.1",
                                                        self.backend)
        self.upstream.transport.write(head)

    def done(self) -> None:
        self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.transport.close()


async def main(port: int, backend: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Client(backend), "127.0.0.1", port, backlog=1024)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), int(sys.argv[2])))
