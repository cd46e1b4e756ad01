"""``report.md``: the report for a pull request, rendered from the report data only."""

from __future__ import annotations

from typing import Any

from analysis.report_sections import (
    MATRIX_FROM,
    METRIC_LEGEND,
    coupling_matrix,
    cut_rows,
    more,
)

METRIC_ROWS = tuple((key, label) for key, (label, _, _) in METRIC_LEGEND.items())


def _cell(value: Any) -> str:
    if value is None:
        return "n/a (needs a query log)"
    if value == []:
        return "none"
    if isinstance(value, list):
        shown, note = more(value, 8)
        return (f"{len(value)}: " + ", ".join(map(str, shown)) + f" {note}").strip() if \
            isinstance(value[0], str) else ", ".join(map(str, value))
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
        TOC_MARK, "", *_warnings(r),
        "## Metrics", "", "| metric | value | better | good |", "| --- | --- | --- | --- |",
        *[f"| {label} | {_cell(m.get(key, ''))} | {better} | {good} |"
          for key, (label, better, good) in METRIC_LEGEND.items()], "",
        *_cuts(r), *_matrix(r),
        "## Contexts", "", "| context | models | tables | endpoints | use cases | ambiguous |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in r["contexts"]:
        ambiguous = ", ".join(f"{x['model']} ({x['other_context']})" for x in c["ambiguous"])
        out.append(f"| **{c['name']}**{' (isolated)' if c.get('isolated') else ''} | "
                   f"{', '.join(c['models'])} | {len(c['tables'])} | "
                   f"{', '.join(c['endpoints']) or '-'} | "
                   f"{', '.join(c.get('use_cases', [])) or '-'} | {ambiguous or '-'} |")
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
    split = r.get("contracts", {}).get("split_first", [])
    if split:
        out += ["", "## Modules to split first", "", "Each holds models of several "
                "contexts; `--emit-contracts` leaves them out of the contracts until split.",
                "", *[f"- `{m}`" for m in split]]
    out += _conflicts(r) + _plan(r)
    if r["sql"]["unparsed"]:
        out += ["", "## SQL that did not parse", ""]
        shown, note = more(r["sql"]["unparsed"], 20)
        out += [f"- `{u['fingerprint'][:100]}`: {u['reason']} ({u['first_seen']})"
                for u in shown] + ([f"- {note}"] if note else [])
    if p["skipped_files"]:
        out += ["", "## Skipped files", ""]
        shown, note = more(p["skipped_files"], 50)
        out += [f"- `{s['path']}`: {s['reason']}" for s in shown] + ([f"- {note}"] if note
                                                                      else [])
    return "\n".join(_with_toc(out)) + "\n"


TOC_MARK = "<!-- toc -->"


def _with_toc(lines: list[str]) -> list[str]:
    """The marker line replaced by links to every ``##`` section, GitHub's anchors."""
    heads = [line[3:] for line in lines if line.startswith("## ")]
    toc = "Contents: " + " · ".join(f"[{h}](#{_anchor(h)})" for h in heads)
    return [toc if line == TOC_MARK else line for line in lines]


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading.

    >>> _anchor("Infrastructure (not a business context)")
    'infrastructure-not-a-business-context'
    """
    kept = "".join(ch for ch in heading.lower() if ch.isalnum() or ch in " -_")
    return kept.replace(" ", "-")


def _cuts(r: dict[str, Any]) -> list[str]:
    rows = cut_rows(r)
    if not rows:
        return []
    return ["## Alternative cuts", "", "Coarser and finer partitions beside the chosen one; "
            "take one with `--contexts N`, or pin models with `--pin MODEL=CONTEXT`.", "",
            "| cut | contexts | modularity (higher) | MQ (higher) | slivers (lower) | "
            "sizes | |", "| --- | ---: | ---: | ---: | ---: | --- | --- |",
            *[f"| {' | '.join(row)} |" for row in rows], ""]


def _matrix(r: dict[str, Any]) -> list[str]:
    names, cells = coupling_matrix(r)
    if len(names) < MATRIX_FROM:
        return []
    return ["## Coupling matrix", "", "Edge weight between contexts (diagonal: inside).", "",
            "| | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names),
            *[f"| **{n}** | " + " | ".join(f"{x:g}" if x else "." for x in row) + " |"
              for n, row in zip(names, cells, strict=True)], ""]


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
            why, note = more(c["why"], 4)
            out += [f"  - {w}" for w in why] + ([f"  - {note}"] if note else [])
        else:
            apps = ", ".join(f"{k} ({v})" for k, v in c["apps"].items())
            out.append(f"- context **{c['context']}** spans apps {apps}; tangles:")
            tangles, note = more(c["tangles"], 4)
            out += [f"  - {' - '.join(t['between'])} ({', '.join(t['signals'])}): "
                    f"{t['evidence'][0] if t['evidence'] else ''}" for t in tangles]
            out += [f"  - {note}"] if note else []
    return out


def _plan(r: dict[str, Any]) -> list[str]:
    out = ["", "## Extraction plan", "",
           "| rank | context | cross-context writes | FKs | cost | shares a transaction with "
           "| out: writes, keys, calls | in: written, keys, calls | routes |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in r["extraction_plan"]:
        shown, note = more(s["routes"], 5)
        routes = " ".join([", ".join(next(iter(x.values())) for x in shown), note]).strip()
        b = s["cost"]["breakdown"]
        out.append(f"| {s['rank']} | {s['context']} | {s['cost']['cross_context_writes']} | "
                   f"{s['cost']['foreign_keys']} | {s['cost']['score']} | "
                   f"{len(_txs(s)['partners'])} | "
                   f"{b['writes_to_others']}, {b['keys_out']}, {b['calls_out']} | "
                   f"{b['written_by_others']}, {b['keys_in']}, {b['calls_in']} | "
                   f"{routes or '-'} |")
    out += ["", "Ranked by cost, lowest first (docs/analysis.md, \"Extraction order\"): what "
            "a context needs from others (writes, keys, calls out) weighs more than what "
            "others need from it (keys and calls in), and a database transaction shared "
            "with another context (it becomes a saga) weighs most."]
    for s in r["extraction_plan"]:
        out += ["", f"### {s['rank']}. {s['context']}", "",
                f"- cost {s['cost']['score']}: " + ", ".join(
                    f"{k.replace('_', ' ')} {n} x {s['cost']['weights'][k]}"
                    for k, n in s["cost"]["breakdown"].items()),
                f"- tables that move: {', '.join(s['tables']) or '-'}",
                f"- foreign keys to replace: {len(s['foreign_keys_out'])} outgoing, "
                f"{len(s['foreign_keys_in'])} incoming",
                *[f"  - out {fk['from']} -> {fk['to']}: {fk['becomes']}"
                  for fk in more(s["foreign_keys_out"], 6)[0]],
                *[f"  - {note}" for note in [more(s["foreign_keys_out"], 6)[1]] if note],
                *[f"  - in {fk['from']} -> {fk['to']}: {fk['becomes']}"
                  for fk in more(s["foreign_keys_in"], 6)[0]],
                *[f"  - {note}" for note in [more(s["foreign_keys_in"], 6)[1]] if note],
                f"- generic relations (no column to replace): "
                f"{', '.join(g['from'] for g in s.get('generic_relations', [])) or '-'}",
                f"- other contexts' models its code uses: "
                f"{', '.join(c['model'] for c in s['calls_out']) or 'none'}",
                f"- events the monolith must publish: {', '.join(s['events_to_publish']) or '-'}",
                *transaction_lines(s),
                f"- shared tables blocking the move: "
                f"{', '.join(s['blocking_shared_tables']) or 'none'}"]
    return out


def _txs(step: dict[str, Any]) -> dict[str, Any]:
    return step.get("cross_context_transactions") or {"partners": [], "evidence": [],
                                                      "total": 0}


def transaction_lines(step: dict[str, Any], shown: int = 6) -> list[str]:
    """The plan step's transactions that span contexts, with where each one is.

    >>> transaction_lines({"cross_context_transactions": {"partners": ["stock"], "total": 1,
    ...     "evidence": [{"where": "shop/orders.py:12", "how": "transaction.atomic",
    ...                   "unit": "shop.orders.pay", "with": ["stock"], "count": 1}]}})
    ... # doctest: +NORMALIZE_WHITESPACE
    ['- transactions that span contexts: 1, shared with stock (each becomes a saga: a step
      and a compensation per context)',
     '  - shop/orders.py:12 (transaction.atomic, shop.orders.pay): may also write stock']
    """
    t = _txs(step)
    if not t["total"]:
        return ["- transactions that span contexts: none"]
    out = [f"- transactions that span contexts: {t['total']}, shared with "
           f"{', '.join(t['partners'])} (each becomes a saga: a step and a compensation per "
           f"context)"]
    for e in t["evidence"][:shown]:
        if e["how"] == "query log":  # what ran
            out.append(f"  - {e['where']} (query log, {e['unit']}, {e['count']} seen): also "
                       f"wrote {', '.join(e['with'])}")
        else:  # every branch the code reaches: what may run
            out.append(f"  - {e['where']} ({e['how']}, {e['unit']}): may also write "
                       f"{', '.join(e['with'])}")
    if t["total"] > shown:
        out.append(f"  - and {t['total'] - shown} more (report.json)")
    return out
