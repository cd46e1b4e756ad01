"""The shadow dashboard: HTML from the store, and in a real headless chromium via the admin."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from shadow_testkit import monolith_route, routes_toml

from strangler_proxy.config import ProxyConfig, parse_config
from strangler_proxy.shadow import DiffRecord, open_store
from strangler_proxy.shadow.dashboard import clear_cache, handle

CHROMIUM = "/usr/bin/chromium"


def routes_text(tmp_path: Path) -> str:
    return routes_toml(tmp_path / "diffs.sqlite3", gate=(5, 0.5), listen=True,
                       token="secret-token",
                       more=monolith_route("orders", "/api/orders/"))


@pytest.fixture
def config(tmp_path: Path) -> Iterator[ProxyConfig]:
    clear_cache()
    store = open_store(str(tmp_path / "diffs.sqlite3"))
    try:
        common = {"route": "products", "template": "/api/products/{id}/", "method": "GET",
                  "monolith_status": 200, "service_status": 200, "monolith_ms": 3.0,
                  "service_ms": 4.0}
        store.add([DiffRecord(path=f"/api/products/{i}/", verdict="match", **common)
                   for i in range(8)])
        store.add([DiffRecord(
            path="/api/products/42/", verdict="mismatch", **common,
            differences=({"path": "$.items[1].price", "kind": "type", "monolith": "9.50",
                          "service": 9.5},),
            monolith_headers=(("Content-Type", "application/json"),),
            service_headers=(("Content-Type", "application/json"),),
            monolith_body=b'{"id": 42, "items": [{"price": "1.00"}, {"price": "9.50"}]}',
            service_body=b'{"id": 42, "items": [{"price": "1.00"}, {"price": 9.5}]}')])
    finally:
        store.close()
    (tmp_path / "strangler.toml").write_text(routes_text(tmp_path))
    yield parse_config(routes_text(tmp_path), str(tmp_path / "strangler.toml"))
    clear_cache()


def test_overview_lists_routes_modes_rates_and_diffs(config: ProxyConfig) -> None:
    status, ctype, body = handle("/dashboard", "", config)
    page = body.decode()
    assert (status, ctype) == (200, "text/html; charset=utf-8")
    assert "data-route='products'" in page
    assert "data-route='orders'" in page
    assert "88.9%" in page  # 8 of 9 matched
    assert "$.items[*].price" in page
    assert "/dashboard/exchange/9" in page
    assert "<a id=meter-link href='/dashboard/meter'>" in page  # the meter is one click away
    assert "<script" not in page
    assert "http" not in page.split("<body>")[1].replace("http-equiv", "")  # no CDN


def test_exchange_page_shows_both_sides_with_the_difference_marked(config: ProxyConfig) -> None:
    status, _, body = handle("/dashboard/exchange/9", "", config)
    page = body.decode()
    assert status == 200
    assert 'id=monolith-side' in page
    assert 'id=service-side' in page
    assert "<span class=hl>      &quot;price&quot;: &quot;9.50&quot;</span>" in page
    assert "<span class=hl>      &quot;price&quot;: 9.5</span>" in page


def test_compared_values_show_as_json_text_in_quotes_numbers_bare(config: ProxyConfig) -> None:
    page = handle("/dashboard/exchange/9", "", config)[2].decode()
    # "9.50" (text) on the monolith side against 9.5 (a number): the quotes tell them apart
    assert "<td><code>&quot;9.50&quot;</code></td><td><code>9.5</code></td>" in page


def test_unknown_pages_and_exchanges_are_404(config: ProxyConfig) -> None:
    assert handle("/dashboard/exchange/999", "", config)[0] == 404
    assert handle("/dashboard/nope", "", config)[0] == 404


def test_html_in_stored_values_is_escaped(config: ProxyConfig, tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "diffs.sqlite3"))
    try:
        store.add([DiffRecord(route="products", template="/t", method="GET",
                              path="/api/products/<script>x</script>", verdict="mismatch",
                              monolith_status=200, service_status=500,
                              differences=({"path": "status", "kind": "status",
                                            "monolith": 200, "service": 500},))])
    finally:
        store.close()
    clear_cache()
    page = handle("/dashboard", "", config)[2].decode()
    assert "<script>" not in page
    assert "&lt;script&gt;" in page


@pytest.fixture
def admin_url(tmp_path: Path, config: ProxyConfig) -> Iterator[str]:
    from strangler_proxy.control import ProxyApp
    from strangler_proxy.edge import listen_socket

    app = ProxyApp(tmp_path / "strangler.toml", environ={})
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(app.start(proxy_sock=listen_socket("127.0.0.1:0"),
                                          admin_sock=listen_socket("127.0.0.1:0"),
                                          watch=False))
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        assert ready.wait(10), "the proxy did not start"
        yield f"http://{app.admin_address}"
    finally:
        asyncio.run_coroutine_threadsafe(app.stop(grace=1.0), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@pytest.mark.browser
@pytest.mark.skipif(not shutil.which(CHROMIUM), reason="needs Debian chromium at "
                    f"{CHROMIUM} (apt-get install -y chromium)")
def test_dashboard_in_headless_chromium_through_the_admin_port(admin_url: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page()
            page.set_default_timeout(10_000)
            # without the token cookie the dashboard is refused
            assert page.goto(f"{admin_url}/dashboard").status == 401
            # given a login with the token, the browser lands on the dashboard
            page.goto(f"{admin_url}/login")
            page.fill("input[name=token]", "secret-token")
            page.click("button")
            page.wait_for_url("**/dashboard")
            row = page.locator("#routes tr[data-route='products']")
            assert row.locator(".mode").inner_text() == "shadow"
            assert "88.9%" in row.locator(".match-rate").inner_text()
            assert page.locator("table.diffs code").first.inner_text() == "$.items[*].price"
            # when the user opens the latest mismatch
            page.locator("a.exchange").first.click()
            page.wait_for_url("**/dashboard/exchange/*")
            # then both sides are shown next to each other, the difference highlighted
            left = page.locator("#monolith-side")
            right = page.locator("#service-side")
            assert left.bounding_box()["x"] < right.bounding_box()["x"]  # type: ignore[index]
            assert '"9.50"' in left.locator(".hl").inner_text()
            assert "9.5" in right.locator(".hl").inner_text()
            assert page.locator("#differences td").first.inner_text() == "$.items[1].price"
        finally:
            browser.close()


def test_latest_mismatches_leave_out_exchanges_that_differ_only_by_noise(
        config: ProxyConfig, tmp_path: Path) -> None:
    # given the monolith differs from itself on served_at as often as from the service
    store = open_store(str(tmp_path / "diffs.sqlite3"))
    try:
        common = {"route": "products", "template": "/api/products/{id}/", "method": "GET",
                  "monolith_status": 200, "service_status": 200, "verdict": "mismatch",
                  "differences": ({"path": "$.served_at", "kind": "value", "monolith": 1,
                                   "service": 2},)}
        store.add([DiffRecord(path="/api/products/1/", kind="self", **common)
                   for _ in range(10)])
        store.add([DiffRecord(path="/api/products/noise-only/", **common) for _ in range(3)])
    finally:
        store.close()
    clear_cache()
    # when the overview is built
    _, _, body = handle("/dashboard", "", config)
    latest = body.decode().split("Latest mismatches")[1]
    # then the real mismatch is listed, the noise-only ones are not
    assert "/api/products/42/" in latest
    assert "noise-only" not in latest
