"""The shadow side's HTTP client against a real scripted server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from strangler_proxy.shadow.client import ConnectError, HttpClient, ProtocolError

Answer = Callable[[str, bytes, asyncio.StreamWriter], Awaitable[bool]]  # False: close after


@dataclass
class Scripted:
    """A server that reads requests off the wire and answers each with ``answer``."""

    answer: Answer
    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


async def _serve(scripted: Scripted, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
    scripted.connections += 1
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            scripted.requests.append(head + body)
            path = head.split(b" ", 2)[1].decode()
            if not await scripted.answer(path, body, writer):
                break
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def server(answer: Answer) -> AsyncIterator[Scripted]:
    scripted = Scripted(answer)
    srv = await asyncio.start_server(lambda r, w: _serve(scripted, r, w), "127.0.0.1", 0)
    scripted.port = srv.sockets[0].getsockname()[1]
    try:
        yield scripted
    finally:
        srv.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(srv.wait_closed(), 2)


def ok(body: bytes, *extra: bytes) -> bytes:
    head = [b"HTTP/1.1 200 OK", b"Content-Length: %d" % len(body), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def run(coro: Awaitable[object]) -> object:
    async def bounded() -> object:
        return await asyncio.wait_for(coro, 20)
    return asyncio.run(bounded())


def test_keep_alive_reuses_one_connection_and_sends_a_clean_head() -> None:
    async def answer(path: str, body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(ok(b"got " + path.encode() + b" " + body))
        return True

    async def main() -> tuple[list[bytes], int, list[bytes]]:
        async with server(answer) as srv, HttpClient(4) as client:
            url = f"http://127.0.0.1:{srv.port}"
            bodies = [(await client.request("GET", f"{url}/a?x=1", [("Host", "shop")])).body,
                      (await client.request("POST", f"{url}/b", [("Connection", "close"),
                                                                  ("X-A", "1")], b"hi")).body]
            return bodies, srv.connections, srv.requests

    bodies, connections, seen = run(main())  # type: ignore[misc]
    assert bodies == [b"got /a?x=1 ", b"got /b hi"]
    assert connections == 1
    assert seen[0] == b"GET /a?x=1 HTTP/1.1\r\nHost: shop\r\n\r\n"
    port_host = seen[1].split(b"\r\n")[2]
    assert seen[1].startswith(b"POST /b HTTP/1.1\r\nX-A: 1\r\n")  # no Connection passed on
    assert port_host.startswith(b"Host: 127.0.0.1:")
    assert seen[1].endswith(b"Content-Length: 2\r\n\r\nhi")


def test_chunked_and_close_delimited_answers_and_repeated_headers() -> None:
    async def answer(path: str, body: bytes, writer: asyncio.StreamWriter) -> bool:
        if path == "/chunked":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nSet-Cookie: a=1\r\n"
                         b"Set-Cookie: b=2\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
        return False

    async def main() -> list[object]:
        async with server(answer) as srv, HttpClient(4) as client:
            url = f"http://127.0.0.1:{srv.port}"
            chunked = await client.request("GET", f"{url}/chunked", [])
            closed = await client.request("GET", f"{url}/close", [])
            return [chunked.body, [v for n, v in chunked.headers if n == b"Set-Cookie"],
                    closed.body, closed.truncated]

    assert run(main()) == [b"hello world", [b"a=1", b"b=2"], b"until the end", False]


def test_head_and_204_end_at_the_head() -> None:
    async def answer(path: str, body: bytes, writer: asyncio.StreamWriter) -> bool:
        if path == "/empty":
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        else:  # a HEAD answer announces a length but sends no body
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        return True

    async def main() -> list[object]:
        async with server(answer) as srv, HttpClient(4) as client:
            url = f"http://127.0.0.1:{srv.port}"
            head = await client.request("HEAD", f"{url}/thing", [])
            empty = await client.request("GET", f"{url}/empty", [])
            return [head.status, head.body, empty.status, empty.body, srv.connections]

    assert run(main()) == [200, b"", 204, b"", 1]


def test_a_capped_body_is_cut_but_hashed_to_its_end_and_its_connection_reused() -> None:
    async def answer(path: str, body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(ok(b"x" * 100_000))
        return True

    async def main() -> list[object]:
        async with server(answer) as srv, HttpClient(4) as client:
            url = f"http://127.0.0.1:{srv.port}/big"
            first = await client.request("GET", url, [], max_body=10)
            second = await client.request("GET", url, [])
            return [first.body, first.truncated, first.size, first.digest,
                    len(second.body), second.truncated, srv.connections]

    assert run(main()) == [b"x" * 10, True, 100_000, hashlib.sha256(b"x" * 100_000).hexdigest(),
                           100_000, False, 1]


def test_a_reused_connection_closed_without_an_answer_is_retried_only_when_idempotent() -> None:
    served: dict[asyncio.StreamWriter, int] = {}  # keeps each writer alive: no id reuse

    async def answer(path: str, body: bytes, writer: asyncio.StreamWriter) -> bool:
        nth = served[writer] = served.get(writer, 0) + 1
        if nth > 1:  # the request came on a kept-alive connection: close without answering
            return False
        writer.write(ok(b"ok " + body))
        return True

    async def main() -> list[object]:
        async with server(answer) as srv, HttpClient(4) as client:
            url = f"http://127.0.0.1:{srv.port}/x"
            first = await client.request("GET", url, [])
            again = await client.request("GET", url, [])  # nothing came back: sent again
            with pytest.raises(ProtocolError, match="closed or was reset before any answer"):
                await client.request("POST", url, [], b"once")  # never sent twice
            fresh = await client.request("POST", url, [], b"new")  # on a new connection
            return [first.body, again.body, fresh.body, srv.connections,
                    [r.split(b" ")[0] for r in srv.requests]]

    assert run(main()) == [b"ok ", b"ok ", b"ok new", 3,
                           [b"GET", b"GET", b"GET", b"POST", b"POST"]]


def test_connect_errors_cut_answers_garbage_and_timeouts() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]

    async def answer(path: str, body: bytes, writer: asyncio.StreamWriter) -> bool:
        if path == "/cut":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
            return False
        if path == "/garbage":
            writer.write(b"SPDY/9 what\r\n\r\n")
            return False
        await asyncio.sleep(5)  # /slow
        return False

    async def main() -> list[str]:
        errors: list[str] = []
        async with server(answer) as srv, HttpClient(4) as client:
            url = f"http://127.0.0.1:{srv.port}"
            for target in (f"http://127.0.0.1:{dead}/", f"{url}/cut", f"{url}/garbage"):
                try:
                    await client.request("GET", target, [])
                except (ConnectError, ProtocolError) as exc:
                    errors.append(type(exc).__name__)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await client.request("GET", f"{url}/slow", [])
            errors.append(str(len(client._idle.get(("http", "127.0.0.1", srv.port), []))))
        return errors

    assert run(main()) == ["ConnectError", "ProtocolError", "ProtocolError", "0"]


def test_an_upgraded_connection_is_never_reused() -> None:
    async def answer(path: str, body: bytes, writer: asyncio.StreamWriter) -> bool:
        if path == "/ws":
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\n\r\n")
            return True  # the server keeps the socket open, now speaking websocket
        writer.write(ok(b"plain"))
        return True

    async def main() -> list[object]:
        async with server(answer) as srv, HttpClient(4) as client:
            url = f"http://127.0.0.1:{srv.port}"
            upgraded = await client.request("GET", f"{url}/ws", [("Upgrade", "websocket"),
                                                                 ("Connection", "Upgrade")])
            plain = await client.request("GET", f"{url}/plain", [])
            return [upgraded.status, plain.body, srv.connections]

    assert run(main()) == [101, b"plain", 2]
