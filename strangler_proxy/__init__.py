"""strangler_proxy: the proxy that diverts traffic route by route, and its shadow comparison.

Inside: a pure core (``config``, ``routing``, ``match``, ``keys``, ``headers``, ``exchange``,
``metrics``, ``errors``, ``write_atomic``), the edge (``edge/``: sockets), the control plane
(``control/``) and the shadow side (``shadow/``), each with its own face; the commands
(``commands/``) sit on top. ``docs/architecture.md`` draws which may import which.

Other packages use only the names below and the contracts documented in ``docs/`` (routes
file, diff records, the shadow marker).
"""

from __future__ import annotations

# First: loads the compiled hot path only if it was built from these very sources (native.py).
from strangler_proxy import native  # noqa: F401 - activates on import
from strangler_proxy.config import ProxyConfig, load_config, parse_config
from strangler_proxy.errors import ConfigError, ProxyError
from strangler_proxy.exchange import (
    NullSink,
    OfferSink,
    RecordedRequest,
    RecordedResponse,
    ShadowOffer,
    ShadowSink,
)
from strangler_proxy.headers import ROLLED_BACK_HEADER, SHADOW_HEADER
from strangler_proxy.shadow_marker import MARKER_HEADER, check_marker, secret_from, sign_marker

__all__ = ["MARKER_HEADER", "ROLLED_BACK_HEADER", "SHADOW_HEADER", "ConfigError", "NullSink",
           "OfferSink", "ProxyConfig", "ProxyError", "RecordedRequest", "RecordedResponse",
           "ShadowOffer", "ShadowSink", "check_marker", "load_config", "parse_config",
           "secret_from", "sign_marker"]
