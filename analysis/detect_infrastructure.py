"""Pass 9: set aside infrastructure (plumbing) models before the graph is partitioned.

A transactional outbox, an audit log, an event journal or a consumer's bookkeeping table
is not a business context: every context writes it, none owns it. Such a model is
recognised by shape, never by a list of project names. It qualifies when it has

* no key to another project model except hubs (the user model an audit row names), and
* no key from a model of another app pointing at it,

and at least one sign of plumbing:

* it holds a generic relation (``GenericForeignKey``: it points at *any* row),
* its app label or class name carries a plumbing word (:data:`PLUMBING_WORDS`), or
* it has no relation at all and code of :data:`MANY_APPS` or more apps uses it.

These models are reported as infrastructure / shared-kernel candidates, left out of the
partition (so out of the contexts, the metrics and the quality score, like shared models).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import replace

from analysis.state import Analysis

PLUMBING_WORDS = frozenset({"outbox", "inbox", "audit", "auditlog", "log", "logs", "logging",
                            "event", "events", "journal", "eventstore"})
KEY_KINDS = ("fk", "o2o", "m2m", "through")
MANY_APPS = 3


def detect_infrastructure(a: Analysis) -> Analysis:
    """Map each infrastructure model to the reasons it was set aside."""
    outgoing: dict[str, set[str]] = defaultdict(set)
    incoming: dict[str, set[str]] = defaultdict(set)
    for r in a.relations:
        if r.kind in KEY_KINDS and r.source != r.target:
            outgoing[r.source].add(r.target)
            incoming[r.target].add(r.source)
    users = _using_apps(a)
    found: dict[str, list[str]] = {}
    for key, m in sorted(a.models.items()):
        if m.abstract or key not in (a.graph.nodes if a.graph is not None else a.models):
            continue
        if any(t not in a.hubs for t in outgoing[key]):
            continue  # it belongs to something: a domain model
        if any(a.models[s].app_label != m.app_label for s in incoming[key] if s in a.models):
            continue  # another app's model points at it: a domain model
        reasons = _reasons(a, key, users.get(key, set()),
                           bare=not outgoing[key] and not incoming[key])
        if reasons:
            found[key] = reasons
    return replace(a, infrastructure=found)


def _reasons(a: Analysis, key: str, apps: set[str], bare: bool) -> list[str]:
    m = a.models[key]
    out = []
    if key in a.generic_models:
        out.append("generic relation (points at any model)")
    words = name_words(m.app_label) | name_words(m.name)
    if hit := sorted(words & PLUMBING_WORDS):
        out.append(f"plumbing name ({', '.join(hit)})")
    if bare and len(apps - {m.app_label}) >= MANY_APPS - 1 and len(apps) >= MANY_APPS:
        out.append(f"no relations, used by code of {len(apps)} apps")
    return out


def name_words(name: str) -> set[str]:
    """Lower-case words of a label or class name.

    >>> sorted(name_words("OutboxEvent")), sorted(name_words("audit_log"))
    (['event', 'outbox'], ['audit', 'log'])
    """
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).replace("_", " ")
    return {w.lower() for w in spaced.split()}


def _using_apps(a: Analysis) -> dict[str, set[str]]:
    """Model -> app labels of the code that uses it (by the using module's top package)."""
    module_app = {m.qualname.rsplit(".", 1)[0]: m.app_label for m in a.models.values()}
    pkg_app = {mod.rsplit(".", 1)[0]: app for mod, app in module_app.items()}
    out: dict[str, set[str]] = defaultdict(set)
    for u in a.usages:
        app = module_app.get(u.module) or _package_app(u.module, pkg_app)
        if app is None:
            continue
        for model in u.models:
            out[model].add(app)
    return out


def _package_app(module: str, pkg_app: dict[str, str]) -> str | None:
    parts = module.split(".")
    for i in range(len(parts) - 1, 0, -1):
        if (app := pkg_app.get(".".join(parts[:i]))) is not None:
            return app
    return None
