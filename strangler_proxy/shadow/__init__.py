"""Shadow traffic and its evidence: sink, worker, client, compare, noise, store, report, gate.

The proxy hands finished exchanges to ``sink.ProcessSink`` (an ``exchange.ShadowSink``),
which frames them to a worker process (``worker``) that copies them to the service
(``client``), compares (``compare`` with ``rules``), learns noise (``noise``) and stores
diff records (``store``). ``report``, ``gate`` and ``dashboard`` read the store through
``evidence``; ``replay`` feeds recorded traffic through the same comparison. With
``[shadow].proxy_sends_to = "comparator"`` the proxy's sink is ``remote.RemoteSink``
instead, whose far end is the standalone comparator (``serve``, ``strangler shadow serve``).
The shadow side never imports the edge. The control plane and the commands use these names.
"""

from __future__ import annotations

from strangler_proxy.config import ProxyConfig
from strangler_proxy.shadow.compare import compare
from strangler_proxy.shadow.gate import GateDecision, check_promotion
from strangler_proxy.shadow.replay import ReplayError, load_exchanges, record, replay
from strangler_proxy.shadow.report import (
    ReportError,
    build_report,
    export_regressions,
    parse_since,
)
from strangler_proxy.shadow.rules import compile_rules
from strangler_proxy.shadow.sink import ProcessSink
from strangler_proxy.shadow.store import DiffRecord, DiffStore, open_config_store, open_store


def build_sink(config: ProxyConfig) -> ProcessSink:
    """The proxy's shadow sink (``app.py`` calls this): a worker process of its own, or the
    standalone comparator with ``[shadow].proxy_sends_to = "comparator"``."""
    if config.shadow.proxy_sends_to == "comparator":
        from strangler_proxy.shadow.remote import RemoteSink

        return RemoteSink(config)
    return ProcessSink(config)


__all__ = ["DiffRecord", "DiffStore", "GateDecision", "ProcessSink", "ReplayError",
           "ReportError", "build_report", "build_sink", "check_promotion", "compare",
           "compile_rules", "export_regressions", "load_exchanges", "open_config_store",
           "open_store", "parse_since", "record", "replay"]
