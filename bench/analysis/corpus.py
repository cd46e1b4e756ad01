"""The real-code corpus: `strangler analyze` on Django projects nobody here wrote.

    .venv/bin/python -m bench.analysis --corpus            # the pinned corpus
    .venv/bin/python -m bench.analysis --corpus --unseen   # the two kept out of it

Each project is pinned by version and fetched as a source distribution with
``pip download --no-deps --no-binary :all:`` into a cache outside the repository
(``$STRANGLER_CORPUS``, default ``~/.cache/strangler-corpus``), then unpacked. The truth is
the project's own app split from :mod:`bench.analysis.count_models`, a static counter that
shares no code with ``analysis/``. The analysis runs as a user runs it (the CLI, default
settings, ``--ignore-app-boundaries``) in a child process, timed, with its peak memory.

Scoring is over every concrete model the counter finds: a model the report misses, or
leaves out of every context (unplaced, infrastructure), is its own one-model cluster, so
it counts against ARI and NMI.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.analysis.count_models import Counter as ModelCounter
from bench.analysis.count_models import TrueModel

ROOT = Path(__file__).resolve().parents[2]
# Chosen from the list; the other two stay out as the unseen check. Never tune
# analysis/ to a project here: no project names or per-project constants there.
CORPUS = {"wagtail": "8.0.1", "pretalx": "2025.2.2", "misago": "0.39.6", "kiwitcms": "12.4",
          "mezzanine": "6.1.1", "django-cms": "5.1.3"}
UNSEEN = {"weblate": "5.15", "pretix": "2025.10.1"}
GOALS = {"found": 0.98, "placed": 0.95, "ari": 0.6, "nmi": 0.8, "seconds": 60, "mb": 2048}


def cache_dir() -> Path:
    return Path(os.environ.get("STRANGLER_CORPUS", Path.home() / ".cache/strangler-corpus"))


def fetch(name: str, version: str) -> Path:
    """The unpacked source of ``name==version`` (downloaded once, then cached)."""
    base = cache_dir()
    sdists = base / "sdist"
    sdists.mkdir(parents=True, exist_ok=True)
    stem = name.replace("-", "_").lower()
    found = [p for p in sdists.iterdir() if p.name.lower().replace("-", "_").startswith(
        f"{stem}_{version}.")]
    if not found:
        # Source only. pip prepares the sdist's metadata, and --no-binary :all: applies to
        # its build dependencies too; when one of those cannot be built from source here
        # (weblate's pull lxml), only the project itself is kept to source.
        for no_binary in (":all:", name):
            done = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                 no_binary, "--ignore-requires-python", "--quiet", f"{name}=={version}",
                 "-d", str(sdists)], check=False, timeout=600, capture_output=True)
            if done.returncode == 0:
                break
        else:
            raise RuntimeError(f"pip download {name}=={version} failed: "
                               f"{done.stderr.decode(errors='replace')[-1000:]}")
        found = [p for p in sdists.iterdir() if p.name.lower().replace("-", "_").startswith(
            f"{stem}_{version}.")]
    archive = found[0]
    src = base / "src"
    with tarfile.open(archive) as tar:
        top = tar.getnames()[0].split("/")[0]
        if not (src / top).is_dir():
            tar.extractall(src, filter="data")
    return src / top


def analyze(root: Path, out: Path, extra: tuple[str, ...] = ()) -> tuple[dict[str, Any],
                                                                          float, float, str]:
    """Run the CLI on ``root``: report, seconds, peak MB of the child, its stderr."""
    cmd = [sys.executable, "-m", "strangler_proxy.cli", "analyze", str(root), "--out",
           str(out), "--format", "json", "--json", *extra]
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        raise RuntimeError(f"analyze {root} exited {proc.returncode}: {stderr[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    return report, seconds, usage.ru_maxrss / 1024, stderr


def adjusted_rand(truth: list[str], found: list[str]) -> float:
    """Adjusted Rand index of two labellings of the same items (own copy: independent)."""
    def pairs(c: Counter[Any]) -> float:
        return sum(v * (v - 1) / 2 for v in c.values())
    n = len(truth)
    if n < 2:
        return 1.0
    index = pairs(Counter(zip(truth, found, strict=True)))
    a, b = pairs(Counter(truth)), pairs(Counter(found))
    expected = a * b / (n * (n - 1) / 2)
    top = (a + b) / 2
    return 1.0 if top == expected else (index - expected) / (top - expected)


def normalized_mutual_info(truth: list[str], found: list[str]) -> float:
    """NMI with the arithmetic-mean normalisation (scikit-learn's default)."""
    n = len(truth)
    ct, cf = Counter(truth), Counter(found)
    joint = Counter(zip(truth, found, strict=True))
    mi = sum(v / n * math.log(v * n / (ct[t] * cf[f])) for (t, f), v in joint.items())
    h = [-sum(v / n * math.log(v / n) for v in c.values()) for c in (ct, cf)]
    if h[0] == 0 and h[1] == 0:
        return 1.0
    return mi / (sum(h) / 2) if sum(h) else 0.0


def score(truth: list[TrueModel], report: dict[str, Any]) -> dict[str, Any]:
    """Found, placed, K, ARI and NMI of a report against the counter's models."""
    infra = {i["model"] for i in report.get("infrastructure", [])}
    nodes = {}
    for n in report["nodes"]:
        path = n["where"].rsplit(":", 1)[0]
        nodes[(path, n["id"].split(".", 1)[1])] = (
            n["context"] if n["context"] and n["id"] not in infra else None)
    t_labels, f_labels = [], []
    found = placed = 0
    for i, m in enumerate(truth):
        key = (m.path, m.name)
        ctx = nodes.get(key)
        found += key in nodes
        placed += ctx is not None
        t_labels.append(m.app)
        f_labels.append(ctx if ctx is not None else f"<alone {i}>")
    n = max(1, len(truth))
    return {"models": len(truth), "found": found / n, "placed": placed / n,
            "k_true": len(set(t_labels)), "k": len({c for c in f_labels if c[0] != "<"}),
            "ari": adjusted_rand(t_labels, f_labels),
            "nmi": normalized_mutual_info(t_labels, f_labels)}


def run_corpus(projects: dict[str, str], extra: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="corpus-") as work:
        for name, version in projects.items():
            root = fetch(name, version)
            counter = ModelCounter(root)
            truth = counter.models()
            report, seconds, mb, stderr = analyze(
                root, Path(work) / name, ("--ignore-app-boundaries", *extra))
            row = {"project": f"{name} {version}", **score(truth, report),
                   "seconds": seconds, "peak_mb": mb,
                   "counter_read_as_text": counter.unreadable,
                   "warnings": [line for line in stderr.splitlines() if line.strip()][:5]}
            rows.append(row)
            print(_line(row), flush=True)
    return rows


def _line(r: dict[str, Any]) -> str:
    return (f"| {r['project']} | {r['models']} | {r['found']:.1%} | {r['placed']:.1%} | "
            f"{r['k']} / {r['k_true']} | {r['ari']:.3f} | {r['nmi']:.3f} | "
            f"{r['seconds']:.1f} | {r['peak_mb']:.0f} | {_verdict(r)} |")


def _verdict(r: dict[str, Any]) -> str:
    missed = [k for k, ok in (("found", r["found"] >= GOALS["found"]),
                              ("placed", r["placed"] >= GOALS["placed"]),
                              ("ARI", r["ari"] >= GOALS["ari"]),
                              ("NMI", r["nmi"] >= GOALS["nmi"]),
                              ("time", r["seconds"] <= GOALS["seconds"]),
                              ("memory", r["peak_mb"] <= GOALS["mb"])) if not ok]
    return "met" if not missed else "below: " + ", ".join(missed)


def print_table(rows: list[dict[str, Any]]) -> None:
    print("| project | models | found | placed | K / true K | ARI | NMI | s | peak MB | goals |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        print(_line(r))
    keys = ("found", "placed", "ari", "nmi", "seconds", "peak_mb")
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in keys}
    print(f"| **mean** | | {mean['found']:.1%} | {mean['placed']:.1%} | | {mean['ari']:.3f} | "
          f"{mean['nmi']:.3f} | {mean['seconds']:.1f} | {mean['peak_mb']:.0f} | |")
    for r in rows:
        if r.get("counter_read_as_text"):
            print(f"note: {r['project']}: the truth counter read {len(r['counter_read_as_text'])}"
                  f" file(s) in newer syntax by their class lines only")
