"""Pass 9: set aside infrastructure (plumbing) models before the graph is partitioned.

A transactional outbox, an audit log, an event journal or a consumer's bookkeeping table
is not a business context: every context writes it, none owns it. Such a model is
recognised by shape, never by a list of project names. It qualifies when it has

* no key to another project model except hubs (the user model an audit row names), and
* no key from a model of another app pointing at it,

and a sign of plumbing:

* a plumbing word in its app label or class name (:data:`PLUMBING_WORDS`: outbox,
  audit, journal...), or
* a generic relation (``GenericForeignKey``: it points at *any* row) *and* a weaker
  plumbing word (:data:`LOG_WORDS`: log, event), as an activity log has.

A generic relation alone is not enough (a CMS's placeholder, a comment, a tag points at
any row and is a domain model), nor is a weak word alone (a conference's ``Event``, a
CMS's page log entries belong to their domain), nor is being used everywhere: the core
models of a project are used by every app, and they must be placed, not set aside.

These models are reported as infrastructure / shared-kernel candidates, left out of the
partition (so out of the contexts, the metrics and the quality score, like shared models).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import replace

from analysis.state import Analysis

PLUMBING_WORDS = frozenset({"outbox", "inbox", "audit", "auditlog", "journal", "eventstore"})
LOG_WORDS = frozenset({"log", "logs", "logging", "event", "events"})
KEY_KINDS = ("fk", "o2o", "m2m", "through")


def detect_infrastructure(a: Analysis) -> Analysis:
    """Map each infrastructure model to the reasons it was set aside."""
    outgoing: dict[str, set[str]] = defaultdict(set)
    incoming: dict[str, set[str]] = defaultdict(set)
    for r in a.relations:
        if r.kind in KEY_KINDS and r.source != r.target:
            outgoing[r.source].add(r.target)
            incoming[r.target].add(r.source)
    found: dict[str, list[str]] = {}
    for key, m in sorted(a.models.items()):
        if m.abstract or key not in (a.graph.nodes if a.graph is not None else a.models):
            continue
        if any(t not in a.hubs for t in outgoing[key]):
            continue  # it belongs to something: a domain model
        if any(a.models[s].app_label != m.app_label for s in incoming[key] if s in a.models):
            continue  # another app's model points at it: a domain model
        reasons = _reasons(a, key)
        if reasons:
            found[key] = reasons
    return replace(a, infrastructure=found)


def _reasons(a: Analysis, key: str) -> list[str]:
    m = a.models[key]
    out = []
    words = name_words(m.app_label) | name_words(m.name)
    generic = key in a.generic_models
    if hit := sorted(words & PLUMBING_WORDS):
        out.append(f"plumbing name ({', '.join(hit)})")
    if generic and (hit := sorted(words & LOG_WORDS)):
        out.append(f"generic relation (points at any model) and a log name "
                   f"({', '.join(hit)})")
    elif generic and out:
        out.append("generic relation (points at any model)")
    return out


def name_words(name: str) -> set[str]:
    """Lower-case words of a label or class name.

    >>> sorted(name_words("OutboxEvent")), sorted(name_words("audit_log"))
    (['event', 'outbox'], ['audit', 'log'])
    """
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).replace("_", " ")
    return {w.lower() for w in spaced.split()}
