"""``report.html``: one self-contained file (inline CSS and SVG, no script, no CDN).

Two pictures drawn here, without graphviz: the contexts and their coupling (circles
sized by models, lines by cross-context weight), and the data view (which contexts read
and write which tables; red = written by more than one context). Evidence is folded in
``<details>`` elements: on demand, offline.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from html import escape
from typing import Any

from analysis.report_markdown import _anchor, _cell, transaction_lines
from analysis.report_sections import MATRIX_FROM, METRIC_LEGEND, coupling_matrix, cut_rows, more

CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 7px;
vertical-align:top;text-align:left}th{background:#f3f3f3}code{font-size:12px}
details{margin:.2em 0}summary{cursor:pointer}.muted{color:#777}svg{background:#fcfcfc;
border:1px solid #ddd}"""
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac")


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def coupling_svg(r: dict[str, Any]) -> str:
    """Contexts on a circle; line width = structural + data weight between two contexts."""
    ctxs = r["contexts"]
    size, centre = 560, 280
    ring = 200 if len(ctxs) > 1 else 0
    pos = {c["name"]: (centre + ring * math.cos(2 * math.pi * i / max(1, len(ctxs))),
                       centre + ring * math.sin(2 * math.pi * i / max(1, len(ctxs))))
           for i, c in enumerate(ctxs)}
    of = {n["id"]: n["context"] for n in r["nodes"]}
    between: dict[tuple[str, str], float] = defaultdict(float)
    for e in r["edges"]:
        a, b = of.get(e["source"]), of.get(e["target"])
        if a and b and a != b:
            between[(min(a, b), max(a, b))] += e["weight"]
    top = max(between.values(), default=1.0)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
             f'viewBox="0 0 {size} {size}" role="img" aria-label="context coupling">']
    for (a, b), w in sorted(between.items()):
        (x1, y1), (x2, y2) = pos[a], pos[b]
        parts.append(f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" '
                     f'stroke="#888" stroke-opacity=".6" stroke-width="{1 + 9 * w / top:.1f}">'
                     f"<title>{escape(a)} - {escape(b)}: {w:.2f}</title></line>")
    for i, c in enumerate(ctxs):
        x, y = pos[c["name"]]
        rad = 12 + 6 * math.sqrt(len(c["models"]))
        parts.append(f'<circle cx="{x:.0f}" cy="{y:.0f}" r="{rad:.0f}" fill="{_color(i)}" '
                     f'fill-opacity=".85"><title>{escape(", ".join(c["models"]))}</title>'
                     f"</circle>")
        parts.append(f'<text x="{x:.0f}" y="{y + rad + 14:.0f}" text-anchor="middle">'
                     f'{escape(c["name"])} ({len(c["models"])})</text>')
    return "".join(parts) + "</svg>"


def data_svg(r: dict[str, Any], limit: int = 60) -> str:
    """Contexts (left) and tables (right); grey = reads, red = writes."""
    access: dict[tuple[str, str], str] = {}
    for step in r["extraction_plan"]:
        for t in step["tables"]:
            access[(step["context"], t)] = "owns"
        for t in step["foreign_tables_read"]:
            access.setdefault((step["context"], t), "reads")
        for t in step["blocking_shared_tables"]:
            access[(step["context"], t)] = "writes"
    shared = set(r["metrics"].get("tables_written_by_multiple_contexts", []))
    every = sorted({t for _, t in access}, key=lambda t: (t not in shared, t))
    tables, left_out = more(every, limit)
    ctxs = [c["name"] for c in r["contexts"]]
    height = max(80, 16 * len(tables) + 40, 40 * len(ctxs) + 40)
    ty = {t: 30 + i * 16 for i, t in enumerate(tables)}
    cy = {c: 30 + i * (height - 60) / max(1, len(ctxs) - 1) for i, c in enumerate(ctxs)}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="760" height="{height}" '
             f'viewBox="0 0 760 {height}" role="img" aria-label="data access">']
    for (c, t), kind in sorted(access.items()):
        if t not in ty:
            continue
        colour = {"owns": "#59a14f", "reads": "#aaa", "writes": "#e15759"}[kind]
        parts.append(f'<line x1="200" y1="{cy[c]:.0f}" x2="470" y2="{ty[t] - 4}" '
                     f'stroke="{colour}" stroke-width="{2 if kind != "reads" else 1}">'
                     f"<title>{escape(c)} {kind} {escape(t)}</title></line>")
    for i, c in enumerate(ctxs):
        parts.append(f'<circle cx="200" cy="{cy[c]:.0f}" r="7" fill="{_color(i)}"/>'
                     f'<text x="190" y="{cy[c] + 4:.0f}" text-anchor="end">{escape(c)}</text>')
    for t, y in ty.items():
        fill = "#e15759" if t in shared else "#333"
        parts.append(f'<text x="478" y="{y}" fill="{fill}" font-size="12">{escape(t)}</text>')
    if left_out:
        parts.append(f'<text x="478" y="{height - 6}" font-size="12">{left_out}</text>')
    return "".join(parts) + "</svg>"


def report_html(r: dict[str, Any]) -> str:
    """Render ``report.html``."""
    m = r["metrics"]
    body = [f"<h1>Proposed bounded contexts for <code>{escape(r['project']['root'])}</code></h1>",
            f"<p class=muted>{r['project']['parsed_files']} files, {m['models']} models, "
            f"{r['sql']['statements']} SQL statements; app boundaries "
            f"{'ignored' if r['options']['ignore_app_boundaries'] else 'used'}; seed "
            f"{r['options']['seed']}.</p>", _warnings(r),
            "<h2>Contexts and their coupling</h2>", coupling_svg(r),
            "<h2>Data view: who reads and writes which tables</h2>",
            "<p class=muted>green: owns; grey: reads another context's table; red: writes a "
            "table it does not own. Tables in red are written by more than one context.</p>",
            data_svg(r), "<h2>Metrics</h2>", _table(["metric", "value", "better", "good"], [
                [label, _cell(m.get(key, "")), better, good]
                for key, (label, better, good) in METRIC_LEGEND.items()]),
            _cuts(r), _heat_map(r), "<h2>Contexts</h2>"]
    for c in r["contexts"]:
        body.append(_context(c))
    body += [_shared(r), _conflicts(r), _plan(r), _sql(r)]
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>strangler analyze"
            f"</title><style>{CSS}</style></head><body>{_with_toc(''.join(body))}"
            "</body></html>\n")


def _with_toc(html: str) -> str:
    """Every ``<h2>`` gets an id, and a list of links to them follows the first paragraph."""
    heads = re.findall(r"<h2>(.*?)</h2>", html)
    for h in heads:
        html = html.replace(f"<h2>{h}</h2>", f'<h2 id="{_anchor(h)}">{h}</h2>', 1)
    toc = "<nav><strong>Contents</strong>: " + " · ".join(
        f'<a href="#{_anchor(h)}">{h}</a>' for h in heads) + "</nav>"
    end = html.find("</p>")
    return html[:end + 4] + toc + html[end + 4:] if end >= 0 else toc + html


def _cuts(r: dict[str, Any]) -> str:
    rows = cut_rows(r)
    if not rows:
        return ""
    return ("<h2>Alternative cuts</h2><p class=muted>coarser and finer partitions beside the "
            "chosen one; take one with <code>--contexts N</code></p>" + _table(
                ["cut", "contexts", "modularity (higher)", "MQ (higher)", "slivers (lower)",
                 "sizes", ""], rows))


def _heat_map(r: dict[str, Any]) -> str:
    names, cells = coupling_matrix(r)
    if len(names) < MATRIX_FROM:
        return ""
    top = max((x for i, row in enumerate(cells) for j, x in enumerate(row) if i != j),
              default=1.0) or 1.0
    head = "<tr><th></th>" + "".join(f"<th>{escape(n)}</th>" for n in names) + "</tr>"
    rows = "".join(
        f"<tr><th>{escape(n)}</th>" + "".join(
            f'<td style="background:rgba(225,87,89,{min(1.0, x / top):.2f})">{x:g}</td>'
            if i != j else f"<td><strong>{x:g}</strong></td>"
            for j, x in enumerate(row)) + "</tr>"
        for i, (n, row) in enumerate(zip(names, cells, strict=True)))
    return ("<h2>Coupling matrix</h2><p class=muted>edge weight between contexts; darker red "
            "= more coupled; the diagonal is the weight inside</p><table>" + head + rows
            + "</table>")


def _warnings(r: dict[str, Any]) -> str:
    health = r.get("signal_health", {})
    out = "<h2>Signal health</h2>" + _table(["signal", "models with it", "share"], [
        [s, h["models"], f"{h['share']:.0%}"] for s, h in health.items()]) if health else ""
    if r.get("warnings"):
        out += "<h2>Warnings</h2><ul>" + "".join(
            f"<li><strong>{escape(w)}</strong></li>" for w in r["warnings"]) + "</ul>"
    return out


def _table(head: list[str], rows: list[list[Any]]) -> str:
    return ("<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>" + "".join(
        "<tr>" + "".join(f"<td>{escape(str(x))}</td>" for x in row) + "</tr>" for row in rows)
        + "</table>")


def _context(c: dict[str, Any]) -> str:
    ev = "".join(
        f"<details><summary><code>{escape(m)}</code></summary><ul>" + "".join(
            f"<li>{escape(e['model'])} (weight {e['weight']}, "
            f"{escape(', '.join(e['signals']))}): {escape('; '.join(e['evidence']))}</li>"
            for e in edges) + "</ul></details>"
        for m, edges in c["evidence"].items())
    amb = ", ".join(f"{x['model']} (also {x['other_context']})" for x in c["ambiguous"])
    return (f"<h3>{escape(c['name'])} <span class=muted>({len(c['models'])} models)</span></h3>"
            f"<p>tables: {escape(', '.join(c['tables']))}<br>endpoints: "
            f"{escape(', '.join(c['endpoints']) or '-')}<br>use cases (query-log routes): "
            f"{escape(', '.join(c.get('use_cases', [])) or '-')}<br>ambiguous: "
            f"{escape(amb or '-')}</p>"
            f"<details><summary>why each model is here</summary>{ev}</details>")


def _shared(r: dict[str, Any]) -> str:
    rows = [[s["model"], s["context"], s["hub_score"], s["generic_relation"]]
            for s in r["shared_kernel"]]
    infra = [[x["model"], x["table"], "; ".join(x["reasons"])]
             for x in r.get("infrastructure", [])]
    return "<h2>Shared-kernel candidates</h2>" + (_table(
        ["model", "placed in", "hub score", "generic relation"], rows)
        if rows else "<p>none</p>") + (
        "<h2>Infrastructure (not a business context)</h2><p class=muted>set aside before "
        "clustering; not in the contexts, metrics or plan</p>"
        + (_table(["model", "table", "why"], infra) if infra else "<p>none</p>"))


def _conflicts(r: dict[str, Any]) -> str:
    items = []
    for c in r["conflicts"]:
        if c["kind"] == "app_split":
            text = f"app {c['app']} split over " + "; ".join(
                f"{k}: {', '.join(v)}" for k, v in c["contexts"].items())
            detail = c["why"]
        else:
            text = f"context {c['context']} spans apps " + ", ".join(c["apps"])
            detail = [f"{' - '.join(t['between'])}: {'; '.join(t['evidence'])}"
                      for t in c["tangles"]]
        items.append(f"<details><summary>{escape(text)}</summary><ul>"
                     + "".join(f"<li>{escape(d)}</li>" for d in detail) + "</ul></details>")
    title = "<h2>Where the code disagrees with the app split</h2>"
    return title + ("".join(items) or "<p>none</p>")


def _plan(r: dict[str, Any]) -> str:
    rows = [[s["rank"], s["context"], s["cost"]["score"], ", ".join(
             f"{k.replace('_', ' ')} {n}" for k, n in s["cost"]["breakdown"].items()),
             s["cost"]["cross_context_writes"],
             s["cost"]["foreign_keys"], s["cost"]["calls_per_endpoint"],
             ", ".join(next(iter(x.values())) for x in s["routes"]),
             ", ".join(s["events_to_publish"]), ", ".join(s["blocking_shared_tables"]),
             "; ".join(line.strip("- ") for line in transaction_lines(s, 6))]
            for s in r["extraction_plan"]]
    return "<h2>Extraction plan</h2>" + _table(
        ["rank", "context", "cost", "cost breakdown (docs/analysis.md)", "cross writes", "FKs",
         "calls/endpoint", "routes to divert",
         "events to publish", "blocking shared tables",
         "transactions that span contexts (each becomes a saga)"], rows)


def _sql(r: dict[str, Any]) -> str:
    rows = [[u["fingerprint"][:160], u["reason"], u["first_seen"]] for u in r["sql"]["unparsed"]]
    skipped = [[s["path"], s["reason"]] for s in r["project"]["skipped_files"]]
    return ("<h2>SQL that did not parse</h2>" + (_table(["statement", "reason", "seen"], rows)
            if rows else "<p>none</p>") + "<h2>Skipped files</h2>" + (
            _table(["file", "reason"], skipped) if skipped else "<p>none</p>"))
