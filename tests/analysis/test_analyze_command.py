"""``strangler analyze`` end to end: outputs, the draft routes file, errors as one line."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from analysis.cli import analyze

LOGS = Path(__file__).parent / "logs"


@pytest.fixture(scope="module")
def report_dir(sample_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    result = CliRunner().invoke(analyze, [str(sample_project), "--out", str(out), "--json",
                                          "--query-log", str(LOGS / "script.sql")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # click >= 8.2 mixes stderr into result.output
    assert summary["models"] == 14
    assert summary["files"]["skipped"] == 2
    return out


def test_writes_all_reports_and_the_routes_file(report_dir: Path) -> None:
    for name in ("report.html", "report.md", "report.json", "strangler.toml"):
        assert (report_dir / name).stat().st_size > 200, name
    report = json.loads((report_dir / "report.json").read_text())
    assert report["schema_version"] == 3
    keys = {m for c in report["contexts"] for m in c["models"]}
    assert "catalog.Product" in keys
    assert all("." in k for k in keys)
    html = (report_dir / "report.html").read_text()
    assert html.count("<svg") == 2
    assert "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")


def test_draft_routes_file_has_one_group_per_context(report_dir: Path) -> None:
    text = (report_dir / "strangler.toml").read_text()
    data = tomllib.loads(text)
    report = json.loads((report_dir / "report.json").read_text())
    contexts = {c["name"] for c in report["contexts"]}
    assert set(data["upstreams"]) == contexts | {"monolith"}
    assert data["admin"]["token_env"] == "STRANGLER_ADMIN_TOKEN"
    routes = data["routes"]
    assert routes
    assert all(r["mode"] == "monolith" and r["group"] == r["target"] in contexts
                          for r in routes)
    assert {"path_template": "/orders/{pk}/"} in [r["match"] for r in routes]


def test_draft_routes_file_is_accepted_by_the_proxy(report_dir: Path) -> None:
    config = pytest.importorskip("strangler_proxy.config")
    parsed = config.parse_config((report_dir / "strangler.toml").read_text())
    assert len(parsed.routes) == len(tomllib.loads(
        (report_dir / "strangler.toml").read_text())["routes"])


def _strangler(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "strangler.cli", "analyze", *args],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(("args", "message"), [
    (["{tmp}"], "no Django project found"),
    (["{sample}", "--query-log", "{tmp}/missing.log"], "cannot read query log"),
    (["{sample}", "--dialect", "cobol"], "unknown SQL dialect"),
    (["{sample}", "--format", "pdf"], "unknown format pdf"),
], ids=["not-django", "unreadable-log", "unknown-dialect", "bad-format"])
def test_errors_are_one_line_with_exit_status_2(args: list[str], message: str, tmp_path: Path,
                                                sample_project: Path) -> None:
    argv = [a.format(tmp=tmp_path, sample=sample_project) for a in args]
    done = _strangler(*argv, "--out", str(tmp_path / "out"))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert message in done.stderr
    assert not (tmp_path / "out" / "report.json").exists()
