"""Which context's code touches which tables, from code alone (ORM usage by unit).

Not a pass: a helper that the metrics and the plan share. A unit of code (function,
class) belongs to the context of most of the models it uses; a tie goes to a context with
a model of the unit's own app, then to the context its module mostly uses. Every model
the unit uses is then *accessed* by that context, every model it creates, saves, updates
or deletes is *written* by it, and a model of another context is a *call* from it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from analysis.facts import Usage
from analysis.state import Analysis


@dataclass
class CodeAccess:
    """Tables each context's code reads and writes, and the foreign models it calls."""

    reads: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    writes: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    calls: set[tuple[int, str]] = field(default_factory=set)  # (calling context, model)


def code_access(a: Analysis) -> CodeAccess:
    """Attribute each usage unit to a context and record what it touches."""
    part = a.partition
    per_module: dict[str, Counter[int]] = defaultdict(Counter)
    for u in a.usages:
        per_module[u.module].update(part[m] for m in u.models if m in part)
    out = CodeAccess()
    for u in a.usages:
        home = _home(a, u, per_module[u.module])
        if home is None:
            continue
        for m in u.models:
            if m not in part or a.models[m].proxy:
                continue
            out.reads[a.models[m].table].add(home)
            if m in u.writes:
                out.writes[a.models[m].table].add(home)
            if part[m] != home:
                out.calls.add((home, m))
    return out


def _home(a: Analysis, u: Usage, module_votes: Counter[int]) -> int | None:
    part = a.partition
    votes = Counter(part[m] for m in u.models if m in part)
    if not votes:
        return None
    top = max(votes.values())
    tied = sorted(c for c, n in votes.items() if n == top)
    words = set(u.module.split("."))
    own = {part[m] for m in u.models if m in part and a.models[m].app_label in words}
    return max(tied, key=lambda c: (c in own, module_votes[c], -c))
