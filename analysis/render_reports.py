"""Pass 12: write report.json / report.md / report.html and the draft strangler.toml.

Every file is written atomically (temporary file + ``os.replace``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from analysis.cache import write_atomic
from analysis.draft_contracts import contracts_ini
from analysis.report_data import report_data
from analysis.report_html import report_html
from analysis.report_markdown import report_markdown
from analysis.routes_toml import routes_toml
from analysis.state import Analysis, Options


def render_reports(a: Analysis) -> Analysis:
    """Build the report data (unless reused from the cache) and write the chosen formats."""
    report = a.report or report_data(a)
    write_outputs(report, a.options)
    return replace(a, report=report)


RENDERERS: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "json": ("report.json", lambda report: json.dumps(report, indent=1) + "\n"),
    "md": ("report.md", report_markdown),
    "html": ("report.html", report_html),
}


def output_names(options: Options) -> list[str]:
    """The files a run writes into ``options.out``."""
    extra = ["contracts.ini"] if options.emit_contracts else []
    return [RENDERERS[fmt][0] for fmt in options.formats] + ["strangler.toml", *extra]


def write_outputs(report: dict[str, Any], options: Options) -> None:
    """Write the formats asked for, plus ``strangler.toml``, into ``options.out``."""
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    for fmt in options.formats:
        name, render = RENDERERS[fmt]
        write_atomic(out / name, render(report).encode())
    write_atomic(out / "strangler.toml", routes_toml(report).encode())
    if options.emit_contracts:
        write_atomic(out / "contracts.ini", contracts_ini(report).encode())
