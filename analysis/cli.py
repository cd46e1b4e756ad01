"""``strangler analyze``: the command-line edge of the analysis (rich progress, summary)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from analysis.errors import BadOption
from analysis.state import Options

FORMATS = ("html", "md", "json")


def _formats(value: str) -> tuple[str, ...]:
    chosen = tuple(f.strip() for f in value.split(",") if f.strip())
    bad = [f for f in chosen if f not in FORMATS]
    if bad or not chosen:
        raise BadOption(f"--format {value!r}: unknown format {', '.join(bad) or '(none)'}; "
                        f"use a comma-separated list of {', '.join(FORMATS)}")
    return chosen


@click.command("analyze")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--query-log", "query_logs", multiple=True, type=click.Path(path_type=Path),
              help="Query log to mine (capture JSONL, PostgreSQL stderr/csv, MySQL general, "
                   ".sql). Repeatable.")
@click.option("--dialect", default=None,
              help="SQL dialect of the logs and raw SQL (postgres, mysql, sqlite, ...).")
@click.option("--out", "out", type=click.Path(path_type=Path), default=Path("strangler-report"),
              show_default=True, help="Directory for the reports and the draft strangler.toml.")
@click.option("--format", "formats", default="html,md,json", show_default=True,
              help="Comma-separated report formats: html, md, json.")
@click.option("--contexts", type=int, default=None,
              help="Ask for exactly N contexts instead of letting the data choose.")
@click.option("--resolution", type=float, default=None,
              help="Leiden resolution, one run (higher = more, smaller contexts).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for community detection (same seed, same answer).")
@click.option("--ignore-app-boundaries", is_flag=True,
              help="Treat the code as one ball of mud: app labels, packages and file "
                   "co-location are not evidence.")
@click.option("--pin", "pins", multiple=True, metavar="MODEL=CONTEXT",
              help="Put a model in a named context (repeatable); the rest is proposed around it.")
@click.option("--contexts-file", type=click.Path(path_type=Path), default=None,
              help="TOML file of decisions: [pins], [merge], [names] (docs/analysis.md).")
@click.option("--emit-contracts", is_flag=True,
              help="Also write contracts.ini: import-linter contracts for the proposed "
                   "contexts, today's violations as a baseline.")
@click.option("--include-tests", is_flag=True,
              help="Analyse test, example and fixture models too (left out by default).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary for machines.")
def analyze(path: Path, query_logs: tuple[Path, ...], dialect: str | None, out: Path,
            formats: str, contexts: int | None, resolution: float | None, seed: int,
            ignore_app_boundaries: bool, pins: tuple[str, ...], contexts_file: Path | None,
            emit_contracts: bool, include_tests: bool, as_json: bool) -> None:
    """Propose bounded contexts for the Django project at PATH.

    Reads the code statically (it never imports or runs it) and, if given, query logs;
    writes report.html, report.md, report.json and a draft strangler.toml into --out.
    """
    from analysis.pipeline import analyze as run

    if contexts is not None and resolution is not None:
        raise BadOption("--contexts and --resolution: give one or the other, not both")
    if resolution is not None and resolution <= 0:
        raise BadOption(f"--resolution {resolution}: must be greater than 0")
    from analysis.decisions import read_decisions

    decisions = read_decisions(contexts_file or Path(""), pins)
    _check_out(out)
    options = Options(root=path, query_logs=query_logs, dialect=dialect, out=out,
                      formats=_formats(formats), contexts=contexts, resolution=resolution,
                      seed=seed, ignore_app_boundaries=ignore_app_boundaries,
                      include_tests=include_tests, decisions=decisions,
                      emit_contracts=emit_contracts)
    if as_json or not sys.stderr.isatty():
        result = run(options)
    else:
        result = _with_progress(options, run)
    for line in result.report.get("warnings", []):
        click.echo(f"warning: {line}", err=True)
    summary = _summary(result.report, out)
    if as_json:
        click.echo(json.dumps(summary, indent=1))
    else:
        _print_table(result.report, summary)


def _check_out(out: Path) -> None:
    """Fail before the analysis, not after it, when the reports cannot be written."""
    if out.exists() and not out.is_dir():
        raise BadOption(f"--out {out}: is a file, not a folder; pass a folder for the reports")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".strangler-write-check"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise BadOption(f"--out {out}: cannot write there ({exc.strerror}); pass a folder "
                        "you can write to") from None


def _with_progress(options: Options, run: Any) -> Any:
    from dataclasses import replace

    from rich.progress import Progress

    with Progress(transient=True) as progress:
        tasks: dict[str, Any] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        return run(replace(options, progress=report))


def _summary(r: dict[str, Any], out: Path) -> dict[str, Any]:
    m = r["metrics"]
    return {
        "out": str(out),
        "files": {"parsed": r["project"]["parsed_files"],
                  "skipped": len(r["project"]["skipped_files"]),
                  "cached": r["project"]["cached_files"]},
        "models": m["models"],
        "contexts": [{"name": c["name"], "models": len(c["models"]),
                      "endpoints": len(c["endpoints"]), "tables": len(c["tables"])}
                     for c in r["contexts"]],
        "metrics": {k: m[k] for k in ("modularity", "sm", "icp", "ifn", "ned", "mq",
                                      "cross_context_foreign_keys", "distributed_write_share")
                    if k in m},
        "sql": {"statements": r["sql"]["statements"], "shapes": r["sql"]["shapes"],
                "unparsed": len(r["sql"]["unparsed"])},
        "extraction_order": [s["context"] for s in r["extraction_plan"]],
        "warnings": r.get("warnings", []),
    }


def _print_table(r: dict[str, Any], summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    plan = {s["context"]: s for s in r["extraction_plan"]}
    table = Table(title=f"{len(r['contexts'])} proposed contexts "
                        f"({summary['models']} models)")
    for col in ("rank", "context", "models", "endpoints", "cost", "cross writes", "FKs",
                "ambiguous", "shared tx"):
        table.add_column(col)
    for c in sorted(r["contexts"], key=lambda c: plan[c["name"]]["rank"]):
        step = plan[c["name"]]
        table.add_row(str(step["rank"]), c["name"], ", ".join(m.split(".")[1] for m in
                      c["models"]), str(len(c["endpoints"])), str(step["cost"]["score"]),
                      str(step["cost"]["cross_context_writes"]),
                      str(step["cost"]["foreign_keys"]), str(len(c["ambiguous"])),
                      str(step["cost"]["breakdown"].get("transaction_partners", 0)))
    # A pipe has no width: rich would fold cells at 80 columns for grep and awk.
    console = Console() if sys.stdout.isatty() else Console(width=100_000, no_color=True)
    console.print(table)
    m = summary["metrics"]
    console.print(" ".join(f"{k}={'-' if v is None else v}" for k, v in m.items()))
    console.print(f"files: {_pairs(summary['files'])}; sql: {_pairs(summary['sql'])}; "
                  f"reports in {summary['out']}")


def _pairs(value: Any) -> str:
    """``a=1, b=2`` for a mapping (never a Python repr), the value itself otherwise."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)
