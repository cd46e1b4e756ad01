"""``report.md``: the report for a pull request, rendered from the report data only."""

from __future__ import annotations

from typing import Any

METRIC_ROWS = (
    ("contexts", "contexts (realised)"), ("context_sizes", "context sizes (models)"),
    ("modularity", "modularity"), ("sm", "structural modularity (SM)"),
    ("icp", "inter-call percentage (ICP)"), ("ifn", "interface number (IFN)"),
    ("ned", "NED: share of models in extreme-size contexts (lower is better)"),
    ("mq", "Bunch's MQ"),
    ("cross_context_foreign_keys", "cross-context foreign keys"),
    ("tables_accessed_by_multiple_contexts", "tables accessed by >1 context"),
    ("tables_written_by_multiple_contexts", "tables written by >1 context"),
    ("distributed_write_share", "requests whose writes span contexts"),
    ("data_evidence", "data metrics from"),
)


def _cell(value: Any) -> str:
    if value is None:
        return "n/a (needs a query log)"
    if value == []:
        return "none"
    if isinstance(value, list):
        return f"{len(value)}: " + ", ".join(map(str, value[:8])) if value and isinstance(
            value[0], str) else ", ".join(map(str, value))
    return str(value).replace("|", "\\|")


def report_markdown(r: dict[str, Any]) -> str:
    """Render ``report.md``."""
    m = r["metrics"]
    p = r["project"]
    out = [
        f"# Proposed bounded contexts for `{p['root']}`", "",
        f"{p['parsed_files']} files ({p['lines']} lines) parsed, {len(p['skipped_files'])} "
        f"skipped; {m['models']} models; {r['sql']['statements']} SQL statements in "
        f"{r['sql']['shapes']} shapes. App boundaries "
        f"{'ignored' if r['options']['ignore_app_boundaries'] else 'used as one signal'}.", "",
        *_warnings(r),
        "## Metrics", "", "| metric | value |", "| --- | --- |",
        *[f"| {label} | {_cell(m.get(key, ''))} |" for key, label in METRIC_ROWS], "",
        "## Contexts", "", "| context | models | tables | endpoints | ambiguous |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in r["contexts"]:
        ambiguous = ", ".join(f"{x['model']} ({x['other_context']})" for x in c["ambiguous"])
        out.append(f"| **{c['name']}** | {', '.join(c['models'])} | {len(c['tables'])} | "
                   f"{len(c['endpoints'])} | {ambiguous or '-'} |")
    if r["shared_kernel"]:
        out += ["", "## Shared-kernel candidates", "",
                "Hub models that much of the code touches; damped in the graph so they do "
                "not glue contexts together. Decide who owns them before extracting.", ""]
        out += [f"- `{s['model']}` (placed in {s['context']}; hub score {s['hub_score']}"
                f"{'; holds a generic relation' if s['generic_relation'] else ''})"
                for s in r["shared_kernel"]]
    if r.get("infrastructure"):
        out += ["", "## Infrastructure (not a business context)", "",
                "Plumbing models (outbox, audit log, event bookkeeping) set aside before the "
                "contexts were proposed; left out of the contexts, the metrics and the plan. "
                "Each context that writes them needs its own copy, or they stay a shared "
                "kernel.", ""]
        out += [f"- `{x['model']}` (`{x['table']}`): {'; '.join(x['reasons'])}"
                for x in r["infrastructure"]]
    out += _conflicts(r) + _plan(r)
    if r["sql"]["unparsed"]:
        out += ["", "## SQL that did not parse", ""]
        out += [f"- `{u['fingerprint'][:100]}`: {u['reason']} ({u['first_seen']})"
                for u in r["sql"]["unparsed"][:20]]
    if p["skipped_files"]:
        out += ["", "## Skipped files", ""]
        out += [f"- `{s['path']}`: {s['reason']}" for s in p["skipped_files"][:50]]
    return "\n".join(out) + "\n"


def _warnings(r: dict[str, Any]) -> list[str]:
    health = r.get("signal_health", {})
    out = ["## Signal health", "", "| signal | models with it | share |", "| --- | ---: | ---: |",
           *[f"| {s} | {h['models']} | {h['share']:.0%} |" for s, h in health.items()], ""]
    if r.get("warnings"):
        out += ["## Warnings", "", *[f"- **{w}**" for w in r["warnings"]], ""]
    return out if health or r.get("warnings") else []


def _conflicts(r: dict[str, Any]) -> list[str]:
    if not r["conflicts"]:
        return ["", "## Where the code disagrees with the app split", "", "Nowhere: every app "
                "maps onto one context."]
    out = ["", "## Where the code disagrees with the app split", ""]
    for c in r["conflicts"]:
        if c["kind"] == "app_split":
            parts = "; ".join(f"{k}: {', '.join(v)}" for k, v in c["contexts"].items())
            out.append(f"- app `{c['app']}` is split: {parts}")
            out += [f"  - {w}" for w in c["why"][:4]]
        else:
            apps = ", ".join(f"{k} ({v})" for k, v in c["apps"].items())
            out.append(f"- context **{c['context']}** spans apps {apps}; tangles:")
            out += [f"  - {' - '.join(t['between'])} ({', '.join(t['signals'])}): "
                    f"{t['evidence'][0] if t['evidence'] else ''}" for t in c["tangles"][:4]]
    return out


def _plan(r: dict[str, Any]) -> list[str]:
    out = ["", "## Extraction plan", "",
           "| rank | context | cross-context writes | FKs | cost | out: writes, keys, calls "
           "| in: written, keys, calls | routes |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in r["extraction_plan"]:
        routes = ", ".join(next(iter(x.values())) for x in s["routes"][:5])
        b = s["cost"]["breakdown"]
        out.append(f"| {s['rank']} | {s['context']} | {s['cost']['cross_context_writes']} | "
                   f"{s['cost']['foreign_keys']} | {s['cost']['score']} | "
                   f"{b['writes_to_others']}, {b['keys_out']}, {b['calls_out']} | "
                   f"{b['written_by_others']}, {b['keys_in']}, {b['calls_in']} | "
                   f"{routes or '-'} |")
    out += ["", "Ranked by cost, lowest first (docs/analysis.md, \"Extraction order\"): what "
            "a context needs from others (writes, keys, calls out) weighs more than what "
            "others need from it (keys and calls in)."]
    for s in r["extraction_plan"]:
        out += ["", f"### {s['rank']}. {s['context']}", "",
                f"- cost {s['cost']['score']}: " + ", ".join(
                    f"{k.replace('_', ' ')} {n} x {s['cost']['weights'][k]}"
                    for k, n in s["cost"]["breakdown"].items()),
                f"- tables that move: {', '.join(s['tables']) or '-'}",
                f"- foreign keys to replace: {len(s['foreign_keys_out'])} outgoing, "
                f"{len(s['foreign_keys_in'])} incoming",
                *[f"  - out {fk['from']} -> {fk['to']}: {fk['becomes']}"
                  for fk in s["foreign_keys_out"][:6]],
                *[f"  - in {fk['from']} -> {fk['to']}: {fk['becomes']}"
                  for fk in s["foreign_keys_in"][:6]],
                f"- other contexts' models its code uses: "
                f"{', '.join(c['model'] for c in s['calls_out']) or 'none'}",
                f"- events the monolith must publish: {', '.join(s['events_to_publish']) or '-'}",
                f"- shared tables blocking the move: "
                f"{', '.join(s['blocking_shared_tables']) or 'none'}"]
    return out
