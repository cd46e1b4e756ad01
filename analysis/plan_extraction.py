"""Pass 12: rank contexts for extraction by a direction-aware cost, and say what each move takes.

The cost (docs/analysis.md, "Extraction order") counts what must be rebuilt before a
context can leave the monolith, weighted by direction:

* what the context needs FROM others is expensive: tables it writes that another context
  owns, tables of its own that another context writes (either write must become an API call
  or an event), keys it holds to other contexts' models and calls its code makes into other
  contexts' models (each becomes an API call or a replicated read model in the service);
* what others need from it is cheap: other contexts' keys to its models stay valid ids
  (they lose the database constraint), and their reads need replicated data or an API;
* a database transaction that writes its tables and another context's (in code, or
  between BEGIN and COMMIT in a query log) is the dearest of all: it becomes a saga, with
  a step and a compensation per context; priced per context it shares one with
  (:mod:`analysis.transactions`).

For each context: the routes to divert (prefixes where a whole URL subtree belongs to the
context, templates otherwise), the tables that move, the keys that become API calls or
replicated data, the events the monolith must publish so the service's copy of other
contexts' data stays in step, and the shared tables that block the move.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import replace
from typing import Any

from analysis.context_access import code_access
from analysis.propose_contexts import endpoint_contexts
from analysis.state import Analysis
from analysis.transactions import MAX_SHOWN, context_transactions

RELATION_KINDS = ("fk", "o2o", "m2m", "through", "generic")
COST_WEIGHTS = {  # per item; documented in docs/analysis.md
    "writes_to_others": 3.0,  # tables it writes that another context owns
    "written_by_others": 3.0,  # its tables that another context writes
    "keys_out": 2.0,  # its keys to another context's model
    "calls_out": 1.0,  # another context's model its code uses
    "keys_in": 0.5,  # another context's key to its model (stays a plain id)
    "calls_in": 0.25,  # a model of its own another context's code uses (read replica / API)
    "transaction_partners": 4.0,  # a context it shares a database transaction with (saga step)
}


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
    code = code_access(a)  # the code's own evidence, with or without a query log
    for t, cs in code.writes.items():
        writers[t] |= cs
    for t, cs in code.reads.items():
        for c in cs:
            reads_by_ctx[c].add(t)
    calls = code.calls
    txs = context_transactions(a, {c["id"]: c["name"] for c in a.contexts})
    steps = [_step(a, ctx, ep_ctx, owner, writers, reads_by_ctx, calls, txs.get(ctx["id"], []))
             for ctx in a.contexts]
    steps.sort(key=lambda s: (s["cost"]["score"], s["cost"]["calls_per_endpoint"],
                              s["context"]))
    for i, s in enumerate(steps, 1):
        s["rank"] = i
    return replace(a, plan=tuple(steps), warnings=a.warnings + tuple(unsplittable(a)))


# a template no path rule can divide: one placeholder or regex for the whole path, or GraphQL
_CATCH_ALL = re.compile(r"^/?(\{[^}/]+\}|\(\?P<\w+>\.[*+]\)|\.[*+])/?$|graphql", re.I)


def unsplittable(a: Analysis) -> list[str]:
    """Routes-draft warnings: endpoints that serve several contexts and that no path rule
    can divide (one GraphQL endpoint, one catch-all view), with the contexts they serve."""
    names = {c["id"]: c["name"] for c in a.contexts}
    out = []
    for e in a.endpoints:
        served = sorted({names[a.partition[m]] for m in a.endpoint_models.get(e.template, ())
                         if m in a.partition})
        if len(served) > 1 and _CATCH_ALL.search(e.template):
            out.append(f"routes draft: endpoint {e.template} ({e.view}) serves {len(served)} "
                       f"contexts ({', '.join(served)}) and cannot be split by path (GraphQL "
                       f"or a catch-all view); split it by operation in code, or keep it on "
                       f"the monolith until the last of them moves")
    return out


def _step(a: Analysis, ctx: dict[str, Any], ep_ctx: dict[str, int], owner: dict[str, int],
          writers: dict[str, set[int]], reads_by_ctx: dict[int, set[str]],
          calls: set[tuple[int, str]], transactions: list[dict[str, Any]]
          ) -> dict[str, Any]:
    c = ctx["id"]
    part = a.partition
    names = {x["id"]: x["name"] for x in a.contexts}
    out_fk, in_fk, generic = [], [], []
    for r in a.relations:
        if r.kind not in RELATION_KINDS or r.source not in part or r.target not in part:
            continue
        if r.kind == "generic":  # GenericRelation: a reverse accessor, no column to replace
            if c in (part[r.source], part[r.target]) and part[r.source] != part[r.target]:
                generic.append({"from": f"{r.source}.{r.field}", "to": r.target,
                                "where": f"{r.path}:{r.line}"})
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
    written_by_others = sorted(t for t in tables if writers.get(t, set()) - {c})
    writes_to_others = sorted(t for t, ws in writers.items() if c in ws and owner.get(t, c) != c)
    blocking = written_by_others + writes_to_others
    calls_out = sorted(m for x, m in calls if x == c and part.get(m) != c)
    calls_in = sorted({m for x, m in calls if x != c and part.get(m) == c})
    foreign_reads = sorted(t for t in reads_by_ctx.get(c, set()) if owner.get(t, c) != c)
    events = sorted({fk["to"] for fk in out_fk} | {
        m for t in foreign_reads for m in a.table_models.get(t, ())[:1]})
    endpoints = [t for t, x in ep_ctx.items() if x == c]
    partners = sorted({x for tx in transactions for x in tx["with"]})
    usage = sum(d["signals"].get("usage", 0.0) for m in ctx["models"]
                for _, v, d in a.graph.edges(m, data=True) if part.get(v, c) != c)
    breakdown = {"writes_to_others": len(writes_to_others),
                 "written_by_others": len(written_by_others),
                 "keys_out": len(out_fk), "calls_out": len(calls_out),
                 "keys_in": len(in_fk), "calls_in": len(calls_in),
                 "transaction_partners": len(partners)}
    score = sum(COST_WEIGHTS[k] * n for k, n in breakdown.items())
    return {
        "context": ctx["name"],
        "routes": route_groups(endpoints, ep_ctx, c),
        "tables": sorted(tables),
        "foreign_keys_out": out_fk,
        "generic_relations": generic,  # no column: the generic key side holds the ids
        "foreign_keys_in": in_fk,
        "events_to_publish": [f"{m} created/updated/deleted" for m in events],
        "foreign_tables_read": foreign_reads,
        "blocking_shared_tables": sorted(set(blocking)),
        "calls_out": [{"model": m, "context": names[part[m]],
                       "becomes": "API call or replicated read model in the service"}
                      for m in calls_out],
        "calls_in": [{"model": m, "becomes": "read replica in the monolith or an API call"}
                     for m in calls_in],
        # database transactions that also write other contexts' tables: each becomes a
        # saga (a step and a compensation per context), code sites first, then query logs
        "cross_context_transactions": {
            "partners": partners,
            "becomes": "a saga: one step and one compensation per context, driven by events",
            "evidence": transactions[:MAX_SHOWN], "total": len(transactions)},
        "cost": {
            "score": round(score, 3),
            "breakdown": breakdown,
            "weights": dict(COST_WEIGHTS),
            "writes_evidence": "ORM writes in code and the query log" if a.options.query_logs
            else "ORM writes and raw SQL in code (no query log)",
            "cross_context_writes": len(set(blocking)),
            "foreign_keys": len(out_fk) + len(in_fk),
            "calls_per_endpoint": round(usage / max(1, len(endpoints)), 3),
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

