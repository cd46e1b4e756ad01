"""report.html as a person sees it: rendered by a real headless chromium, screenshot taken."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from analysis.pipeline import analyze
from analysis.state import Options

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).parent / "real_code_project"


@pytest.mark.browser
@pytest.mark.skipif(not shutil.which(CHROMIUM), reason="needs Debian chromium at "
                    f"{CHROMIUM} (apt-get install -y chromium)")
def test_html_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    # given a report of the real-code fixture project
    analyze(Options(root=ROOT, out=tmp_path, ignore_app_boundaries=True, formats=("html",)))
    report = tmp_path / "report.html"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.set_default_timeout(10_000)
            # when the page is opened
            page.goto(report.as_uri())
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            # then it renders: a title, the coupling picture, signal health, every context
            assert page.locator("h1").inner_text().startswith("Proposed bounded contexts")
            assert page.locator("svg").count() >= 1
            assert page.locator("h2", has_text="Signal health").count() == 1
            body = page.locator("body").text_content() or ""  # <details> included
            for model in ("weblog.Post", "forum.Thread", "polls.Poll"):
                assert model in body
            assert shot.stat().st_size > 10_000  # a blank page is a few hundred bytes
        finally:
            browser.close()
