"""The machine's RabbitMQ for the AMQP tests, and a link to it whose connections can be cut.

``BrokerLink`` is a plain TCP forwarder on 127.0.0.1 (port from the OS) in front of the
real broker. ``cut()`` closes every connection through it: the relay and the consumer see
exactly what a network failure or a broker restart shows them (the socket dies mid-stream),
without needing the broker's admin rights. Not a fake: the AMQP peer is the real broker.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import suppress

import pytest

BROKER_HOST, BROKER_PORT = "127.0.0.1", 5672
BROKER_AUTH = "guest:guest"


def broker_available() -> bool:
    """Whether RabbitMQ answers on 127.0.0.1:5672."""
    with suppress(OSError), socket.create_connection((BROKER_HOST, BROKER_PORT), timeout=1):
        return True
    return False


needs_broker = pytest.mark.skipif(
    not broker_available() and not os.environ.get("STRANGLER_REQUIRE_BROKER"),
    reason="RabbitMQ is not running on 127.0.0.1:5672 (apt-get install rabbitmq-server)")


def broker_url(port: int = BROKER_PORT) -> str:
    """The broker's URL (through a link when given its port)."""
    return f"amqp://{BROKER_AUTH}@127.0.0.1:{port}/%2F"


def queue_prefix() -> str:
    """A queue prefix of its own, so runs sharing the broker never meet."""
    return f"t{uuid.uuid4().hex[:10]}"


class BrokerLink(threading.Thread):
    """A TCP forwarder to the broker; ``cut`` kills every connection through it."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.url = broker_url(self.port)
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.cuts = 0

    def run(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection((BROKER_HOST, BROKER_PORT), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def cut(self) -> int:
        """Close every open connection; how many sockets were closed."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.cuts += 1
        return len(sockets)

    def close(self) -> None:
        """Stop accepting and cut what is open."""
        self.listener.close()
        self.cut()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    for sock in (source, sink):
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def link() -> Iterator[BrokerLink]:
    """A started link, closed afterwards (use as a fixture body)."""
    forwarder = BrokerLink()
    forwarder.start()
    try:
        yield forwarder
    finally:
        forwarder.close()
