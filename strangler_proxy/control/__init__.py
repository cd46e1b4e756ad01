"""The proxy's control plane: the app that wires it, admin API, reload, route edits, audit.

``app.ProxyApp`` is the one place the parts are put together (edge listeners, the shadow
sink, the reloader, the admin API). ``strangler proxy`` and ``strangler routes`` use these
names.
"""

from __future__ import annotations

from strangler_proxy.control.admin import route_record
from strangler_proxy.control.app import ProxyApp, WorkerGroup
from strangler_proxy.control.audit import current_user, read_audit
from strangler_proxy.control.routes_edit import RouteChange, apply_route_change

__all__ = ["ProxyApp", "RouteChange", "WorkerGroup", "apply_route_change", "current_user",
           "read_audit", "route_record"]
