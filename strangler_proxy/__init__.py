"""strangler_proxy: the proxy that diverts traffic route by route, and its shadow comparison.

Public names are listed in ``__all__``; other packages use only these and the contracts
documented in ``docs/`` (routes file, diff records).
"""

from __future__ import annotations

from strangler_proxy.exchange import (
    NullSink,
    OfferSink,
    RecordedRequest,
    RecordedResponse,
    ShadowOffer,
    ShadowSink,
)

__all__ = ["NullSink", "OfferSink", "RecordedRequest", "RecordedResponse", "ShadowOffer",
           "ShadowSink"]
