"""The proxy's edge: client connections, forwarding and upstream pools (sockets).

``server`` parses client requests, ``forward`` carries each exchange to an upstream and back,
``upstream`` pools and parses upstream connections; arrows point that way only (the
Protocols ``upstream.Downstream``/``ResponseReceiver`` and ``forward.Client`` stand for the
side that calls back). The control plane starts it with these names; the edge never imports
``shadow`` (it hands exchanges to an ``exchange.ShadowSink``).
"""

from __future__ import annotations

from strangler_proxy.edge.forward import ProxyState
from strangler_proxy.edge.server import (
    ClientConnection,
    describe,
    listen_socket,
    protocol_factory,
    watchdog,
)
from strangler_proxy.edge.upstream import build_pools

__all__ = ["ClientConnection", "ProxyState", "build_pools", "describe", "listen_socket",
           "protocol_factory", "watchdog"]
