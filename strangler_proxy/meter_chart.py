"""The strangulation meter: how much of the monolith the services have taken, as data and SVG.

Two kinds of share, both from plain data:

- **traffic**: share of requests the services answered, per route and overall, over time
  (from ``live_evidence.EvidenceRing.share_series``);
- **ownership**: share of routes (endpoints) in ``service`` mode, and, given an analysis
  ``report.json``, of its contexts' endpoints, models and tables that services took. A context
  is taken (``contexts_owned``) when its route (the route named after the context, as the
  analysis drafts it) is in ``service`` mode, or, given the routes' matches, when every route
  that can serve each of its endpoints is: a service carved along other lines (the demo's
  ``ordering`` takes the report's ``cart`` context) is counted by what it serves. Endpoints
  are counted one by one the same way.

:func:`chart_svg` draws the traffic series as an inline SVG (no script, no CDN): one line per
route, a thick one for the overall share, a 0–100% axis.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from strangler_proxy.match import Match, match_regex

Series = Sequence[tuple[float, Mapping[str, float | None]]]
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def read_report(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """An analysis ``report.json`` for the meter, or why it cannot be read (one line).

    Read again only when its size or modification time changed (the admin API asks on
    every request).

    >>> read_report(Path("/nonexistent/report.json"))[1].startswith("/nonexistent")
    True
    """
    try:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key in _REPORTS:
            return _REPORTS[key], None
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("contexts", []), list):
            raise ValueError("no list of contexts")
    except (OSError, ValueError) as exc:
        return None, (f"{path}: cannot read the analysis report ({exc}); point [admin] "
                      "report (or --report) at the report.json `strangler analyze` wrote")
    _REPORTS.clear()  # one report at a time: the cache never grows
    _REPORTS[key] = data
    return data, None


_REPORTS: dict[tuple[str, int, int], dict[str, Any]] = {}


def ownership(modes: Mapping[str, str], report: Mapping[str, Any] | None = None,
              matches: Mapping[str, Match] | None = None) -> dict[str, Any]:
    """Share of routes in ``service`` mode and, with a report, of its endpoints/models/tables.

    ``modes`` maps each route to its mode; ``matches`` (in the routes file's order) each
    route to its match, to find which routes serve a context's endpoints.

    >>> ownership({"catalog": "service", "orders": "monolith"})["routes"]
    {'owned': 1, 'total': 2, 'share': 0.5}
    >>> r = {"contexts": [{"name": "catalog", "models": ["a.B"], "tables": ["t", "u"],
    ...                    "endpoints": ["/p/"]}, {"name": "orders", "models": ["a.C"],
    ...                    "tables": ["v"], "endpoints": ["/o/", "/o/{pk}/pay/"]}]}
    >>> ownership({"catalog": "service"}, r)["tables"]
    {'owned': 2, 'total': 3, 'share': 0.667}
    >>> m = {"pay": Match(path_template="/o/{id}/pay/"), "ordering": Match(path_prefix="/o/")}
    >>> taken = ownership({"pay": "monolith", "ordering": "service"}, r, m)
    >>> taken["endpoints"], taken["contexts_owned"]
    ({'owned': 1, 'total': 3, 'share': 0.333}, [])
    >>> moved = ownership({"pay": "service", "ordering": "service"}, r, m)
    >>> moved["contexts_owned"]
    ['orders']
    >>> [(c["name"], c["moved"], c["routes"]["in_service"]) for c in moved["contexts"]]
    [('catalog', False, 0), ('orders', True, 2)]
    """
    out: dict[str, Any] = {"routes": _share(sum(m == "service" for m in modes.values()),
                                            len(modes))}
    if report is not None:
        contexts = [c for c in report.get("contexts", []) if isinstance(c, Mapping)]
        served = {str(c.get("name")): [_taken(str(e), modes, matches or {})
                                       for e in c.get("endpoints", [])] for c in contexts}
        owned = [c for c in contexts if modes.get(str(c.get("name"))) == "service"
                 or (matches and served[str(c.get("name"))]
                     and all(served[str(c.get("name"))]))]
        for key in ("models", "tables"):
            out[key] = _share(sum(len(c.get(key, [])) for c in owned),
                              sum(len(c.get(key, [])) for c in contexts))
        whole = {str(c.get("name")) for c in owned}
        out["endpoints"] = _share(
            sum(len(c.get("endpoints", [])) if str(c.get("name")) in whole
                else sum(served[str(c.get("name"))]) for c in contexts),
            sum(len(c.get("endpoints", [])) for c in contexts))
        out["contexts_owned"] = sorted(whole)
        out["contexts"] = [_context_row(c, modes, matches or {}, whole, served)
                           for c in contexts]
    return out


def _context_row(c: Mapping[str, Any], modes: Mapping[str, str], matches: Mapping[str, Match],
                 whole: set[str], served: Mapping[str, list[bool]]) -> dict[str, Any]:
    """One context of the report: moved or not, and its routes and endpoints in service."""
    name = str(c.get("name"))
    endpoints = [str(e) for e in c.get("endpoints", [])]
    routes = {r for e in endpoints for r in _serving(e, matches)}
    if name in modes:
        routes.add(name)
    return {"name": name, "moved": name in whole,
            "routes": {"in_service": sum(modes.get(r) == "service" for r in routes),
                       "total": len(routes)},
            "endpoints": {"taken": len(endpoints) if name in whole else sum(served[name]),
                          "total": len(endpoints)},
            "models": len(c.get("models", [])), "tables": len(c.get("tables", []))}


def _serving(endpoint: str, matches: Mapping[str, Match]) -> list[str]:
    """The routes that can serve the endpoint's path: the first route whose path matches
    without method or header filters, and the filtered ones before it."""
    path = re.sub(r"\{[^}]*\}|<[^>]*>", "1", endpoint)
    serving = []
    for name, match in matches.items():
        if re.match(match_regex(match), path):
            serving.append(name)
            if not match.methods and not match.headers:
                break
    return serving


def _taken(endpoint: str, modes: Mapping[str, str], matches: Mapping[str, Match]) -> bool:
    """True when every route that can serve the endpoint's path is in service mode."""
    serving = _serving(endpoint, matches)
    return bool(serving) and all(modes.get(name) == "service" for name in serving)


def _share(owned: int, total: int) -> dict[str, Any]:
    return {"owned": owned, "total": total, "share": round(owned / total, 3) if total else 0.0}


def chart_svg(series: Series, width: int = 640, height: int = 240) -> str:
    """Service share over time as an SVG line chart (overall ``"*"`` drawn thickest).

    >>> svg = chart_svg([(0.0, {"*": 0.0, "a": 0.0}), (60.0, {"*": 0.5, "a": 0.5})])
    >>> svg.startswith("<svg") and "data-route='*'" in svg
    True
    """
    left, right, top, bottom = 44, 110, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' id=meter-chart width={width} "
             f"height={height} viewBox='0 0 {width} {height}' role=img "
             "aria-label='share of requests served by services over time'>",
             f"<rect x={left} y={top} width={plot_w} height={plot_h} fill='#fafafa' "
             "stroke='#ccc'/>"]
    for pct in (0, 25, 50, 75, 100):
        y = top + plot_h * (1 - pct / 100)
        parts.append(f"<line x1={left} x2={left + plot_w} y1={y:.1f} y2={y:.1f} "
                     "stroke='#e5e5e5'/>")
        parts.append(f"<text x={left - 6} y={y + 4:.1f} text-anchor=end font-size=11 "
                     f"fill='#555'>{pct}%</text>")
    if not series:
        parts.append(f"<text x={left + plot_w / 2} y={top + plot_h / 2} text-anchor=middle "
                     "font-size=13 fill='#777' class=empty>no traffic sampled yet</text>")
        return "\n".join([*parts, "</svg>"])
    t0, t1 = series[0][0], series[-1][0]
    span = max(t1 - t0, 1e-9)
    names = sorted({n for _, shares in series for n in shares if n != "*"})
    for index, name in enumerate(["*", *names]):
        points = [(left + plot_w * (t - t0) / span, top + plot_h * (1 - share))
                  for t, shares in series if (share := shares.get(name)) is not None]
        colour = "#111" if name == "*" else COLOURS[index % len(COLOURS)]
        stroke = 3 if name == "*" else 1.5
        label = "all routes" if name == "*" else name
        if points:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(f"<polyline class=series data-route='{escape(name)}' fill=none "
                         f"stroke='{colour}' stroke-width={stroke} points='{path}'/>")
        y = top + 14 + 16 * index
        parts.append(f"<line x1={width - right + 8} x2={width - right + 24} y1={y - 4} "
                     f"y2={y - 4} stroke='{colour}' stroke-width={stroke}/>")
        parts.append(f"<text x={width - right + 28} y={y} font-size=11 "
                     f"class=legend>{escape(label)}</text>")
    minutes = span / 60
    parts.append(f"<text x={left} y={height - 8} font-size=11 fill='#555'>"
                 f"{'-' + format(minutes, '.0f') + ' min' if minutes >= 1 else f'-{span:.0f} s'}"
                 "</text>")
    parts.append(f"<text x={left + plot_w} y={height - 8} text-anchor=end font-size=11 "
                 "fill='#555'>now</text>")
    return "\n".join([*parts, "</svg>"])


def meter_page(series: Series, latest: Mapping[str, Any]) -> str:
    """The dashboard's meter page: the chart and a table of the latest shares, no script."""
    rows = "".join(
        f"<tr data-route='{escape(name)}'><td>{escape(name)}</td><td>{escape(str(mode))}</td>"
        f"<td class=share>{'-' if share is None else f'{share:.1%}'}</td></tr>"
        for name, (mode, share) in sorted(latest.get("routes", {}).items()))
    overall = latest.get("overall")
    owned = latest.get("ownership", {}).get("routes", {})
    contexts = _contexts_table(latest)
    return ("<!doctype html><html><head><meta charset=utf-8><title>strangulation meter</title>"
            "<style>body{font:14px system-ui,sans-serif;margin:24px}td,th{padding:2px 10px;"
            "text-align:left}</style></head><body><p><a href='/dashboard'>← dashboard</a></p>"
            "<h1>Strangulation meter</h1>"
            f"<p id=overall>Services answer <b>{'-' if overall is None else f'{overall:.1%}'}"
            f"</b> of requests; {owned.get('owned', 0)} of {owned.get('total', 0)} routes are "
            f"in service mode.</p>{chart_svg(series)}"
            "<table id=meter-routes><tr><th>route</th><th>mode</th><th>served by service "
            f"(last 5 min)</th></tr>{rows}</table>{contexts}</body></html>")


def _contexts_table(latest: Mapping[str, Any]) -> str:
    """The report's contexts: which moved (every route serving them is in service mode),
    with their routes and endpoints in service; or why there is no report."""
    own = latest.get("ownership", {})
    if "contexts" not in own:
        why = latest.get("report_error") or ("no analysis report: set [admin] report = "
                                             "\"report/report.json\" in the routes file")
        return f"<h2>Contexts</h2><p id=meter-contexts-missing>{escape(str(why))}</p>"
    rows = "".join(
        f"<tr data-context='{escape(c['name'])}' data-moved='{str(c['moved']).lower()}'>"
        f"<td>{escape(c['name'])}</td><td class=moved>{'moved' if c['moved'] else 'not yet'}"
        f"</td><td class=routes>{c['routes']['in_service']}/{c['routes']['total']}</td>"
        f"<td class=endpoints>{c['endpoints']['taken']}/{c['endpoints']['total']}</td></tr>"
        for c in own["contexts"])
    taken = own.get("contexts_owned", [])
    return (f"<h2>Contexts</h2><p id=contexts-owned>{len(taken)} of {len(own['contexts'])} "
            f"contexts moved: {escape(', '.join(taken) or 'none yet')}</p>"
            "<table id=meter-contexts><tr><th>context</th><th>moved</th><th>routes in "
            f"service</th><th>endpoints taken</th></tr>{rows}</table>")


__all__ = ["chart_svg", "meter_page", "ownership", "read_report"]
