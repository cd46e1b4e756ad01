"""strangler_proxy: the proxy that diverts traffic route by route, and its shadow comparison.

Public names are listed in ``__all__``; other packages use only these and the contracts
documented in ``docs/`` (routes file, diff records).
"""

from __future__ import annotations

from strangler_proxy.exchange import RecordedRequest, RecordedResponse, ShadowOffer, ShadowSink
from strangler_proxy.shadow_marker import MARKER_HEADER, check_marker, secret_from, sign_marker

__all__ = ["MARKER_HEADER", "RecordedRequest", "RecordedResponse", "ShadowOffer", "ShadowSink",
           "check_marker", "secret_from", "sign_marker"]
