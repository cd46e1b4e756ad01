"""The report as plain data: the ``report.json`` contract (docs/report-schema.md).

HTML and Markdown are renderings of this dict and nothing else, so the three agree.
"""

from __future__ import annotations

from typing import Any

from analysis.state import Analysis

SCHEMA_VERSION = 3


def report_data(a: Analysis) -> dict[str, Any]:
    """Build the ``report.json`` document from a finished analysis."""
    names = {c["id"]: c["name"] for c in a.contexts}
    part = a.partition
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "strangler analyze",
        "project": {
            "root": str(a.options.root),
            "files": len(a.files),
            "parsed_files": len(a.facts),
            "cached_files": a.cached_files,
            "skipped_files": [{"path": p, "reason": r} for p, r in a.skipped],
            "lines": sum(f.lines for f in a.facts),
            "query_logs": [str(p) for p in a.options.query_logs],
        },
        "options": {
            "ignore_app_boundaries": a.options.ignore_app_boundaries,
            "include_tests": a.options.include_tests,
            "seed": a.options.seed,
            "contexts": a.options.contexts,
            "resolution": a.options.resolution,
            "dialect": a.options.dialect,
            "signals": sorted(a.options.signals),
            "weights": dict(vars(a.options.weights).items()),
        },
        "nodes": [_node(a, key, names.get(part.get(key, -1))) for key in sorted(a.graph.nodes)],
        "edges": [
            {"source": u, "target": v, "weight": round(d["weight"], 4),
             "signals": {k: round(x, 4) for k, x in sorted(d["signals"].items())},
             "evidence": d["evidence"]}
            for u, v, d in sorted(a.graph.edges(data=True))
        ],
        "contexts": [_context(c, names) for c in a.contexts],
        "shared_kernel": [
            {"model": m, "hub_score": round(a.hubs.get(m, 0.0), 2),
             "generic_relation": m in a.generic_models,
             "context": names.get(part.get(m, -1))}
            for m in sorted(set(a.hubs) | set(a.generic_models))
            if m in a.graph and m not in a.infrastructure  # listed under "infrastructure"
        ],
        "infrastructure": [
            {"model": m, "table": a.models[m].table, "app_label": a.models[m].app_label,
             "reasons": reasons}
            for m, reasons in sorted(a.infrastructure.items())
        ],
        "warnings": list(a.warnings),
        "contracts": a.contracts,
        "signal_health": a.signal_health.get("signals", {}),
        "cuts": list(a.cuts),
        "metrics": a.metrics,
        "conflicts": list(a.conflicts),
        "extraction_plan": list(a.plan),
        "endpoints": [
            {"template": e.template, "view": e.view, "name": e.name, "where": f"{e.path}:{e.line}",
             "regex": e.regex, "models": sorted(a.endpoint_models.get(e.template, ()))}
            for e in a.endpoints
        ],
        "sql": {
            "statements": a.sql.statements,
            "bad_log_lines": a.sql.bad_lines,
            "shapes": len(a.sql.shapes),
            "unparsed": [{"fingerprint": fp[:300], "reason": why,
                          "first_seen": a.sql.shape_source.get(fp, "")}
                         for fp, why in sorted(a.sql.unparsed.items())][:200],
            "unparsed_total": len(a.sql.unparsed),  # the list above keeps the first 200
            "tables_without_model": sorted(
                {t for acc in a.sql.shapes.values() for t in acc.reads | acc.writes}
                - set(a.table_models)),
        },
        "external_relations": dict(sorted(a.external_refs.items())),
        "timings_s": {k: round(v, 4) for k, v in a.timings.items()},
    }


def _node(a: Analysis, key: str, context: str | None) -> dict[str, Any]:
    m = a.models[key]
    return {"id": key, "kind": "model", "app_label": m.app_label, "table": m.table,
            "where": f"{m.path}:{m.line}", "context": context, "proxy": m.proxy,
            "parents": list(m.parents), "managers": list(m.managers),
            "signals": a.signal_health.get("models", {}).get(key, {})}


def _context(c: dict[str, Any], names: dict[int, str]) -> dict[str, Any]:
    out = {k: v for k, v in c.items() if k != "ambiguous"}
    out["ambiguous"] = [dict(x, other_context=names.get(x["other_context"]))
                        for x in c["ambiguous"]]
    return out
