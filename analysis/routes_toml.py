"""The draft ``strangler.toml``: one route group per proposed context, all ``monolith``.

Keys are limited to what the proxy's routes file accepts (see docs/analysis.md); every
route starts in ``mode = "monolith"`` so loading the draft changes nothing until a person
flips a group. Routes of one context share ``group`` (and so a stickiness salt).
"""

from __future__ import annotations

import json
import re
from typing import Any


def _s(value: str) -> str:
    """A TOML basic string (JSON escaping is valid TOML for these characters)."""
    return json.dumps(value, ensure_ascii=False)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "root"


def routes_toml(report: dict[str, Any]) -> str:
    """Render the draft routes file from the report data."""
    lines = [
        "# Draft routes file written by `strangler analyze` from the proposed contexts.",
        "# Every route starts in mode \"monolith\": loading it changes nothing. Review the",
        "# groups, give each service its real URL, then flip one group at a time:",
        "#   strangler routes set <group> --mode shadow",
        *[f"# WARNING: {w}" for w in report.get("warnings", [])
          if w.startswith("routes draft:")],
        "",
        "[proxy]",
        'listen = "127.0.0.1:8080"',
        "",
        "[admin]",
        'listen = "127.0.0.1:8081"',
        'token_env = "STRANGLER_ADMIN_TOKEN"',
        "",
        "[upstreams.monolith]",
        'url = "http://127.0.0.1:8000"',
    ]
    steps = {s["context"]: s for s in report["extraction_plan"]}
    contexts = sorted(report["contexts"], key=lambda c: steps[c["name"]]["rank"])
    for i, ctx in enumerate(contexts):
        lines += ["", f"# Context {ctx['name']!s}: extraction rank {steps[ctx['name']]['rank']}; "
                  f"placeholder URL, replace with the service's.",
                  f"[upstreams.{ctx['name']}]", f"url = {_s(f'http://127.0.0.1:{8001 + i}')}"]
    used: set[str] = set()
    for ctx in contexts:
        step = steps[ctx["name"]]
        models = ", ".join(ctx["models"][:6]) + (" ..." if len(ctx["models"]) > 6 else "")
        lines += ["", f"# --- group {ctx['name']}: {len(ctx['models'])} models ({models})",
                  f"#     tables: {', '.join(step['tables'][:8])}"]
        if step["blocking_shared_tables"]:
            lines.append(f"#     blocked until ownership is decided: "
                         f"{', '.join(step['blocking_shared_tables'][:8])}")
        if not step["routes"]:
            lines.append("#     no endpoints found for this context")
        for route in step["routes"]:
            lines += _route(ctx["name"], route, used)
    return "\n".join(lines) + "\n"


def _route(context: str, route: dict[str, Any], used: set[str]) -> list[str]:
    key, value = next(iter(route.items()))
    name = f"{context}-{_slug(value)}"
    base, n = name, 2
    while name in used:
        name, n = f"{base}-{n}", n + 1
    used.add(name)
    return ["", "[[routes]]", f"name = {_s(name)}", f"match = {{ {key} = {_s(value)} }}",
            'mode = "monolith"', f"target = {_s(context)}", f"group = {_s(context)}"]
