"""Pass 11: rank contexts for extraction and say what each move takes.

Contexts with the fewest cross-context writes, foreign keys and calls per endpoint go
first. For each: the routes to divert (prefixes where a whole URL subtree belongs to the
context, templates otherwise), the tables that move, the foreign keys that become API
calls or replicated data, the events the monolith must publish so the service's copy of
other contexts' data stays in step, and the shared tables that block the move until
someone decides who owns them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

from analysis.propose_contexts import endpoint_contexts
from analysis.state import Analysis

RELATION_KINDS = ("fk", "o2o", "m2m", "through", "generic")


def plan_extraction(a: Analysis) -> Analysis:
    """One plan step per context, in the order to extract them."""
    part = a.partition
    ep_ctx = endpoint_contexts(a, part)
    owner = {t: part[ms[0]] for t, ms in a.table_models.items() if ms and ms[0] in part}
    writers: dict[str, set[int]] = defaultdict(set)
    reads_by_ctx: dict[int, set[str]] = defaultdict(set)
    for endpoint, access in a.sql.endpoint_tables.items():
        c = ep_ctx.get(endpoint)
        if c is not None:
            for t in access["writes"]:
                writers[t].add(c)
            reads_by_ctx[c] |= access["reads"]
    steps = [_step(a, ctx, ep_ctx, owner, writers, reads_by_ctx) for ctx in a.contexts]
    steps.sort(key=lambda s: (s["cost"]["cross_context_writes"], s["cost"]["foreign_keys"],
                              s["cost"]["calls_per_endpoint"], s["context"]))
    for i, s in enumerate(steps, 1):
        s["rank"] = i
    return replace(a, plan=tuple(steps))


def _step(a: Analysis, ctx: dict[str, Any], ep_ctx: dict[str, int], owner: dict[str, int],
          writers: dict[str, set[int]], reads_by_ctx: dict[int, set[str]]) -> dict[str, Any]:
    c = ctx["id"]
    part = a.partition
    names = {x["id"]: x["name"] for x in a.contexts}
    out_fk, in_fk = [], []
    for r in a.relations:
        if r.kind not in RELATION_KINDS or r.source not in part or r.target not in part:
            continue
        if part[r.source] == c and part[r.target] != c:
            out_fk.append({"from": f"{r.source}.{r.field}", "to": r.target,
                           "to_context": names[part[r.target]], "where": f"{r.path}:{r.line}",
                           "becomes": "API call or replicated read model in the service"})
        elif part[r.target] == c and part[r.source] != c:
            in_fk.append({"from": f"{r.source}.{r.field}", "to": r.target,
                          "from_context": names[part[r.source]], "where": f"{r.path}:{r.line}",
                          "becomes": "plain id in the monolith, no database constraint"})
    tables = set(ctx["tables"])
    blocking = sorted(t for t in tables if writers.get(t, set()) - {c}) + sorted(
        t for t, ws in writers.items() if c in ws and owner.get(t, c) != c)
    foreign_reads = sorted(t for t in reads_by_ctx.get(c, set()) if owner.get(t, c) != c)
    events = sorted({fk["to"] for fk in out_fk} | {
        m for t in foreign_reads for m in a.table_models.get(t, ())[:1]})
    endpoints = [t for t, x in ep_ctx.items() if x == c]
    calls = sum(d["signals"].get("usage", 0.0) for m in ctx["models"]
                for _, v, d in a.graph.edges(m, data=True) if part.get(v, c) != c)
    return {
        "context": ctx["name"],
        "routes": route_groups(endpoints, ep_ctx, c),
        "tables": sorted(tables),
        "foreign_keys_out": out_fk,
        "foreign_keys_in": in_fk,
        "events_to_publish": [f"{m} created/updated/deleted" for m in events],
        "foreign_tables_read": foreign_reads,
        "blocking_shared_tables": sorted(set(blocking)),
        "cost": {
            "cross_context_writes": len(set(blocking)),
            "foreign_keys": len(out_fk) + len(in_fk),
            "calls_per_endpoint": round(calls / max(1, len(endpoints)), 3),
            "endpoints": len(endpoints),
        },
    }


def route_groups(endpoints: list[str], ep_ctx: dict[str, int], c: int) -> list[dict[str, Any]]:
    """Collapse a context's endpoints into path prefixes where nothing else lives below.

    >>> route_groups(["/api/a/", "/api/a/{pk}/", "/api/b/{pk}/", "/c/"],
    ...              {"/api/a/": 0, "/api/a/{pk}/": 0, "/api/b/{pk}/": 0, "/api/b/x/": 1,
    ...               "/c/": 0}, 0)
    [{'path_prefix': '/api/a/'}, {'path_template': '/api/b/{pk}/'}, {'path': '/c/'}]
    """
    out: list[dict[str, Any]] = []
    done: set[str] = set()
    for t in sorted(endpoints):
        if t in done or not t.startswith("/"):
            continue
        prefix = _static_prefix(t)
        below = [e for e in ep_ctx if e.startswith(prefix)]
        if prefix.count("/") >= 3 and all(ep_ctx[e] == c for e in below):
            out.append({"path_prefix": prefix})
            done.update(below)
        else:  # exact: nothing else is caught by mistake
            out.append({"path_template": t} if "{" in t else {"path": t})
            done.add(t)
    return out


def _static_prefix(template: str) -> str:
    """``/api/products/{pk}/reviews/`` -> ``/api/products/``."""
    head = template.split("{", 1)[0]
    return head if head.endswith("/") else head.rsplit("/", 1)[0] + "/"
