"""The shadow dashboard on the proxy's admin port: routes, match rates, diffs, one exchange.

``handle(path, query, config)`` returns ``(status, content type, body)``; the admin listener
checks the token (cookie ``strangler_admin``) and delegates here. Pages are self-contained
HTML (inline CSS, no script, no CDN), built from the same summaries as
``strangler shadow report``:

- ``/dashboard``: every route with its mode, match rate (95% CI), gate, latency, drops, top
  differences and its latest mismatches;
- ``/dashboard/exchange/<id>``: one exchange side by side, differing lines marked.
"""

from __future__ import annotations

import html
import json
import re
import time
from typing import Any, Final
from urllib.parse import parse_qs

from strangler_proxy.config import ProxyConfig
from strangler_proxy.shadow.evidence import build_noise_model, effective_verdict
from strangler_proxy.shadow.report import build_report
from strangler_proxy.shadow.rules import render_path
from strangler_proxy.shadow.store import DiffRecord, open_config_store

HTML: Final = "text/html; charset=utf-8"
_CACHE_SECONDS: Final = 2.0
_RECENT: Final = 10
_cache: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}

_CSS: Final = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d1d1f;background:#fafafa}
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;background:#fff}
th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f0f0f3}.num{text-align:right;font-variant-numeric:tabular-nums}
.mode{font-weight:600;padding:.1rem .4rem;border-radius:.3rem;background:#eef}
.ok{color:#176b2c}.bad{color:#a1151b}.muted{color:#777}
.bar{display:inline-block;width:120px;height:.7rem;background:#eee;position:relative}
.bar span{position:absolute;top:0;bottom:0;background:#8c8}
.sides{display:grid;grid-template-columns:1fr 1fr;gap:1rem}
pre{background:#fff;border:1px solid #ddd;padding:.5rem;overflow:auto;max-height:70vh;margin:0}
pre .hl{background:#ffe08a;display:block}
code{font-size:.9em}
"""


def handle(path: str, query: str, config: ProxyConfig) -> tuple[int, str, bytes]:
    """Serve one dashboard page for an already authenticated request."""
    try:
        if path.rstrip("/") == "/dashboard":
            route = parse_qs(query).get("route", [None])[0]
            return 200, HTML, _overview(config, route).encode()
        match = re.fullmatch(r"/dashboard/exchange/(\d+)/?", path)
        if match:
            return _exchange_page(config, int(match.group(1)))
    except Exception as exc:  # noqa: BLE001 - a broken store must not break the admin port
        return 500, HTML, _page("Dashboard error", f"<p class=bad>{_e(exc)}</p>").encode()
    return 404, HTML, _page("Not found", f"<p>No page at {_e(path)}. "
                            "<a href='/dashboard'>Back to the dashboard</a></p>").encode()


def clear_cache() -> None:
    """Forget cached summaries (tests, and after a store is swapped)."""
    _cache.clear()


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: str, refresh: int = 0) -> str:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8>{meta}"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>{body}</body></html>")


def _report(config: ProxyConfig, route: str | None) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    key = (str(getattr(config, "source", "")), route or "")
    store = open_config_store(config)
    try:
        cached = _cache.get(key)
        if cached and time.monotonic() - cached[0] < _CACHE_SECONDS:
            data = cached[1]
        else:
            data = build_report(config, store, route)
            _cache[key] = (time.monotonic(), data)
        recent = {r["name"]: _latest_real_mismatches(store, r["name"]) for r in data["routes"]}
    finally:
        store.close()
    return data, recent


def _latest_real_mismatches(store: Any, route: str) -> list[DiffRecord]:
    """The newest mismatches that are not only learned noise (those count as matches, as in
    the report and the gate, so listing them would send a reader after nothing)."""
    model = build_noise_model(store.records(route=route))
    newest = store.records(route=route, verdict="mismatch", kind="service", newest_first=True,
                           limit=_RECENT * 20)
    return [r for r in newest if effective_verdict(r, model) == "mismatch"][:_RECENT]


def _overview(config: ProxyConfig, route: str | None) -> str:
    data, recent = _report(config, route)
    gate = data["gate"]
    parts = [
        "<h1>Strangler shadow dashboard</h1>",
        f"<p class=muted>diff store <code>{_e(data['store'])}</code> · gate: at least "
        f"{gate['min_compared']} compared and a 95% lower bound of at least "
        f"{gate['min_match_rate']:.2%} · generated {_e(data['generated_at'])} · "
        "<a id=meter-link href='/dashboard/meter'>strangulation meter</a></p>",
        _routes_table(config, data["routes"]),
    ]
    for summary in data["routes"]:
        parts.append(_route_section(summary, recent.get(summary["name"], [])))
    return _page("Strangler shadow dashboard", "".join(parts), refresh=15)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _routes_table(config: ProxyConfig, summaries: list[dict[str, Any]]) -> str:
    by_name = {s["name"]: s for s in summaries}
    rows = []
    for route in config.routes:
        s = by_name.get(route.name)
        if s is None:
            rows.append(f"<tr data-route='{_e(route.name)}'><td>{_e(route.name)}</td>"
                        f"<td><span class=mode>{_e(route.mode)}</span></td>"
                        f"<td>{_e(route.target)}</td><td colspan=5 class=muted>no service "
                        "target</td></tr>")
            continue
        low, high = s["match_rate_ci"]
        rate = s["match_rate"] if s["compared"] else None
        gate = ("<span class=ok>clears</span>" if s["needed_for_gate"] == 0 else
                "<span class=bad>cannot clear</span>" if s["needed_for_gate"] < 0 else
                f"<span class=bad>needs {s['needed_for_gate']} more</span>")
        lat = s["latency_ms"]
        width = 0 if rate is None else round(rate * 100)
        rows.append(
            f"<tr data-route='{_e(route.name)}'><td><a href='#route-{_e(route.name)}'>"
            f"{_e(route.name)}</a></td><td><span class=mode>{_e(route.mode)}</span></td>"
            f"<td>{_e(route.target)}</td><td class=num>{s['compared']}</td>"
            f"<td class='num match-rate'>{_pct(rate)} <span class=bar><span "
            f"style='width:{width}%'></span></span><br><span class=muted>95% CI "
            f"{_pct(low)}–{_pct(high)}</span></td><td>{gate}</td>"
            f"<td class=num>{_ms(lat['monolith']['p50'])} / {_ms(lat['monolith']['p99'])}<br>"
            f"{_ms(lat['service']['p50'])} / {_ms(lat['service']['p99'])}</td>"
            f"<td class=num>{sum(s['dropped'].values())}</td></tr>")
    return ("<table id=routes><thead><tr><th>route</th><th>mode</th><th>target</th>"
            "<th>compared</th><th>match rate</th><th>gate</th><th>p50 / p99 ms<br>monolith"
            "<br>service</th><th>dropped</th></tr></thead><tbody>" + "".join(rows) +
            "</tbody></table>")


def _route_section(summary: dict[str, Any], recent: list[DiffRecord]) -> str:
    name = _e(summary["name"])
    diffs = "".join(
        f"<tr><td class=num>{d['count']}</td><td><code>{_e(d['path'])}</code></td>"
        f"<td>{_e(d['kind'])}</td><td>{_e(d['noise']['verdict'])} "
        f"<span class=muted>({d['noise']['self_diffs']}/{d['noise']['self_trials']} self, "
        f"p={d['noise']['p_value']:.3g})</span></td><td><a href='/dashboard/exchange/"
        f"{d['example']['exchange_id']}'>{_e(d['example']['request'])}</a></td></tr>"
        for d in summary["differences"][:10])
    diff_table = (f"<table class=diffs><thead><tr><th>count</th><th>path</th><th>kind</th>"
                  f"<th>noise</th><th>example</th></tr></thead><tbody>{diffs}</tbody></table>"
                  if diffs else "<p class=muted>No differences recorded.</p>")
    items = "".join(
        f"<li><a class=exchange href='/dashboard/exchange/{r.id}'>#{r.id} {_e(r.method)} "
        f"{_e(r.path)}</a> <span class=muted>{len(r.differences)} differences, "
        f"{r.monolith_status} vs {r.service_status}</span></li>" for r in recent)
    recent_list = f"<ul>{items}</ul>" if items else "<p class=muted>No mismatches.</p>"
    return (f"<section id='route-{name}'><h2>{name}</h2><h3>Top differences</h3>{diff_table}"
            f"<h3>Latest mismatches</h3>{recent_list}</section>")


# -- one exchange, side by side --------------------------------------------------------------


def _exchange_page(config: ProxyConfig, record_id: int) -> tuple[int, str, bytes]:
    store = open_config_store(config)
    try:
        record = store.get(record_id)
    finally:
        store.close()
    if record is None:
        return 404, HTML, _page("Not found", f"<p>No exchange #{record_id} in the store "
                                "(retention may have removed it). <a href='/dashboard'>"
                                "Back</a></p>").encode()
    return 200, HTML, _page(f"Exchange #{record_id}", _exchange_body(record)).encode()


def _exchange_body(record: DiffRecord) -> str:
    paths = {str(d.get("path")) for d in record.differences}
    rows = "".join(
        f"<tr><td><code>{_e(d.get('path'))}</code></td><td>{_e(d.get('kind'))}</td>"
        f"<td><code>{_e(_show(d.get('monolith')))}</code></td>"
        f"<td><code>{_e(_show(d.get('service')))}</code></td></tr>"
        for d in record.differences)
    query = f"?{record.query}" if record.query else ""
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(record.at))
    return (
        f"<p><a href='/dashboard'>← dashboard</a></p><h1>Exchange #{record.id}: "
        f"{_e(record.method)} {_e(record.path + query)}</h1>"
        f"<p class=muted>route {_e(record.route)} · template {_e(record.template)} · "
        f"{_e(record.kind)} via {_e(record.origin)} · {when} · verdict "
        f"<b class={'ok' if record.verdict == 'match' else 'bad'}>{_e(record.verdict)}</b>"
        f"{' · ' + _e(record.error) if record.error else ''}</p>"
        f"<table id=differences><thead><tr><th>path</th><th>kind</th><th>monolith</th>"
        f"<th>service</th></tr></thead><tbody>{rows}</tbody></table>"
        f"<div class=sides><div id=monolith-side><h2>monolith: {record.monolith_status} "
        f"<span class=muted>{record.monolith_ms:.1f} ms</span></h2>"
        f"{_body_pre(record.monolith_body, record.monolith_headers, paths)}</div>"
        f"<div id=service-side><h2>service: {record.service_status} <span class=muted>"
        f"{record.service_ms:.1f} ms</span></h2>"
        f"{_body_pre(record.service_body, record.service_headers, paths)}</div></div>")


def _show(value: object) -> str:
    """A compared value as JSON, as the CLI shows it: ``"415.71"`` (text) vs ``415.71``."""
    return json.dumps(value, ensure_ascii=False)


def _body_pre(body: bytes, headers: tuple[tuple[str, str], ...], paths: set[str]) -> str:
    head = "".join(f"{_e(k)}: {_e(v)}\n" for k, v in headers)
    try:
        value = json.loads(body) if body else None
    except ValueError:
        value = None
    if value is None:
        text = body.decode("utf-8", "replace") if body else "(no body stored)"
        return f"<pre>{head}\n{_e(text)}</pre>"
    lines = "".join(f"<span class=hl>{_e(line)}</span>" if path in paths else f"{_e(line)}\n"
                    for line, path in pretty_json_lines(value))
    return f"<pre>{head}\n{lines}</pre>"


def pretty_json_lines(value: Any, path: tuple[str | int, ...] = (), indent: int = 0,
                      key: str = "", last: bool = True) -> list[tuple[str, str]]:
    """Pretty-printed JSON as (line, path of the value on that line) pairs.

    >>> [p for _, p in pretty_json_lines({"a": [1]})]
    ['$', '$.a', '$.a[0]', '$.a', '$']
    """
    pad, comma = "  " * indent, "" if last else ","
    label = f"{json.dumps(key)}: " if key else ""
    here = render_path(path)
    if isinstance(value, dict) and value:
        out = [(f"{pad}{label}{{", here)]
        items = list(value.items())
        for i, (k, v) in enumerate(items):
            out += pretty_json_lines(v, (*path, k), indent + 1, k, i == len(items) - 1)
        return [*out, (f"{pad}}}{comma}", here)]
    if isinstance(value, list) and value:
        out = [(f"{pad}{label}[", here)]
        for i, v in enumerate(value):
            out += pretty_json_lines(v, (*path, i), indent + 1, "", i == len(value) - 1)
        return [*out, (f"{pad}]{comma}", here)]
    return [(f"{pad}{label}{json.dumps(value, ensure_ascii=False)}{comma}", here)]
