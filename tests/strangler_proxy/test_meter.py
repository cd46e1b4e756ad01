"""The strangulation meter: live windows, `strangler status`, /metrics and the dashboard chart."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path

import pytest
from proxy_harness import Running, answer_with, running_proxy

from strangler.cli import main
from strangler_proxy.live_evidence import EvidenceRing, sample
from strangler_proxy.meter_chart import chart_svg
from strangler_proxy.metrics import Metrics

CHROMIUM = "/usr/bin/chromium"
ROUTES = '''
[[routes]]
name = "catalog"
match = { path_prefix = "/api/products/" }
mode = "service"
target = "catalog"

[[routes]]
name = "orders"
match = { path_prefix = "/api/orders/" }
'''


def test_a_window_is_the_difference_of_two_samples() -> None:
    # given counters sampled at t=0 and t=10 with traffic in between
    metrics, ring = Metrics(), EvidenceRing()
    metrics.observe("catalog", "monolith", 200, 0.010)
    ring.add(0.0, sample(metrics, {"catalog": "catalog"}))
    for _ in range(98):
        metrics.observe("catalog", "catalog", 200, 0.003)
    metrics.observe("catalog", "catalog", 504, 2.0)  # a timeout
    metrics.fallback("catalog", "connect")  # the monolith covered for the service
    ring.add(10.0, sample(metrics, {"catalog": "catalog"}))
    # then the window holds only what happened in between, errors counted on the service
    window = ring.between("catalog", 0.0)
    assert (window.monolith.requests, window.service.requests) == (0, 100)
    assert window.service.errors == 2
    assert window.service.classes == (98, 0, 0, 2)
    # the median of 99 timed requests (the fallback has no latency), inside the 2.5-5 ms bin
    assert window.service.quantile(0.5) == pytest.approx(0.0025 + 0.0025 * (49.5 / 98))
    assert window.seconds == 10.0


def test_restarted_counters_start_the_ring_afresh() -> None:
    metrics, ring = Metrics(), EvidenceRing()
    metrics.observe("catalog", "catalog", 200, 0.001)
    ring.add(0.0, sample(metrics, {}))
    ring.add(1.0, sample(Metrics(), {}))  # a worker came back with zeroed counters
    assert ring.between("catalog", 0.0).service.requests == 0


def test_the_chart_draws_one_line_per_route_and_the_overall_share() -> None:
    series = [(0.0, {"*": 0.0, "catalog": 0.0}), (30.0, {"*": 0.4, "catalog": 1.0}),
              (60.0, {"*": 0.5, "catalog": None})]
    svg = chart_svg(series)
    assert svg.count("<polyline") == 2
    assert "data-route='catalog'" in svg
    assert "<script" not in svg
    assert "http://" not in svg.replace("http://www.w3.org/2000/svg", "")


def drive(running: Running, count: int) -> None:
    for index in range(count):
        for prefix in ("/api/products/", "/api/orders/"):
            with urllib.request.urlopen(f"{running.url}{prefix}{index}/", timeout=5) as reply:
                reply.read()


def wait_sampled(running: Running, requests: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        driver = running.app.rollouts
        if driver is not None and driver.ring.window("orders", 300).monolith.requests >= \
                requests:
            return
        time.sleep(0.1)
    raise AssertionError("the meter never sampled the traffic")


def test_status_shows_the_share_served_by_services(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"contexts": [
        {"name": "catalog", "models": ["catalog.Product"], "tables": ["catalog_product"],
         "endpoints": ["/api/products/"]},
        {"name": "orders", "models": ["orders.Order", "orders.Line"],
         "tables": ["orders_order", "orders_line"], "endpoints": ["/api/orders/"]}]}))
    handlers = {"monolith": answer_with("monolith"), "catalog": answer_with("catalog")}
    with running_proxy(tmp_path, handlers, routes=ROUTES) as running:
        drive(running, 30)
        wait_sampled(running, 30)
        admin_listen = running.app.admin_address
        text = running.config_path.read_text().replace('listen = "127.0.0.1:0"\ntoken',
                                                       f'listen = "{admin_listen}"\ntoken')
        running.config_path.write_text(text)
        main(["status", "--config", str(running.config_path), "--report", str(report),
              "--json"])
        meter = json.loads(capsys.readouterr().out)
        main(["status", "--config", str(running.config_path)])
        table = capsys.readouterr().out
        with urllib.request.urlopen(urllib.request.Request(
                f"http://{admin_listen}/metrics",
                headers={"Authorization": "Bearer secret-token"}), timeout=5) as reply:
            metrics = reply.read().decode()
    assert meter["overall"] == pytest.approx(0.5)
    assert meter["routes"]["catalog"] == ["service", 1.0]
    assert meter["routes"]["orders"] == ["monolith", 0.0]
    assert meter["ownership"]["routes"] == {"owned": 1, "total": 2, "share": 0.5}
    assert meter["ownership"]["tables"] == {"owned": 1, "total": 3, "share": 0.333}
    assert "services answer 50.0% of routed requests" in table
    assert 'strangler_service_share{route="catalog"} 1.000000' in metrics
    assert "strangler_service_share_overall 0.500000" in metrics


def test_status_without_a_proxy_shows_ownership_only(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from proxy_harness import config_text, free_port
    path = tmp_path / "strangler.toml"
    path.write_text(config_text({"monolith": "http://127.0.0.1:1",
                                 "catalog": "http://127.0.0.1:2"}, ROUTES).replace(
        'listen = "127.0.0.1:0"\ntoken', f'listen = "127.0.0.1:{free_port()}"\ntoken'))
    main(["status", "--config", str(path)])
    out = capsys.readouterr().out
    assert "? (no proxy answered)" in out
    assert "routes owned by services: 1/2 (50.0%)" in out


BOTH_MOVED = '''
[[routes]]
name = "catalog"
match = { path_prefix = "/api/products/" }
mode = "service"
target = "catalog"

[[routes]]
name = "order-pay"
match = { path_template = "/api/orders/{id}/pay/" }
mode = "PAY"
target = "ordering"

[[routes]]
name = "order-ship"
match = { path_template = "/api/orders/{id}/ship/" }

[[routes]]
name = "ordering-writes"
match = { path_prefix = "/api/orders/", methods = ["POST"] }
mode = "service"
target = "ordering"

[[routes]]
name = "ordering"
match = { path_prefix = "/api/orders/" }
mode = "service"
target = "ordering"

[[routes]]
name = "ordering-cart"
match = { path_prefix = "/api/cart/" }
mode = "service"
target = "ordering"

[[routes]]
name = "ordering-checkout"
match = { path = "/api/checkout/" }
mode = "service"
target = "ordering"
'''


@pytest.mark.parametrize(("pay", "taken", "endpoints"), [
    ("monolith", ["cart", "product"], "8/10"), ("service", ["cart", "order", "product"], "9/10")])
def test_status_counts_the_contexts_a_service_took_by_what_its_routes_serve(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], pay: str, taken: list[str],
        endpoints: str) -> None:
    # given the report's contexts (named by the analysis) and routes named after the services
    # that took them (the demo: catalog took `product`, ordering took `cart` and `order`)
    from proxy_harness import config_text, free_port
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"contexts": [
        {"name": "product", "models": ["store.Product"], "tables": ["store_product"],
         "endpoints": ["/api/products/", "/api/products/{pk}/"]},
        {"name": "cart", "models": ["orders.Cart"], "tables": ["orders_cart"],
         "endpoints": ["/api/cart/", "/api/cart/items/<int:pk>/", "/api/checkout/"]},
        {"name": "order", "models": ["orders.Order"], "tables": ["orders_order"],
         "endpoints": ["/api/orders/", "/api/orders/{pk}/", "/api/orders/{pk}/pay/",
                       "/api/orders/{pk}/cancel/"]},
        {"name": "shipment", "models": ["orders.Shipment"], "tables": ["orders_shipment"],
         "endpoints": ["/api/orders/{pk}/ship/"]}]}))
    path = tmp_path / "strangler.toml"
    path.write_text(config_text({"monolith": "http://127.0.0.1:1", "catalog": "http://127.0.0.1:2",
                                 "ordering": "http://127.0.0.1:3"},
                                BOTH_MOVED.replace("PAY", pay)).replace(
        'listen = "127.0.0.1:0"\ntoken', f'listen = "127.0.0.1:{free_port()}"\ntoken'))
    # when the meter is read
    main(["status", "--config", str(path), "--report", str(report), "--json"])
    meter = json.loads(capsys.readouterr().out)
    main(["status", "--config", str(path), "--report", str(report)])
    table = capsys.readouterr().out
    # then a context counts as taken when every route serving its endpoints is a service's
    # (order's pay moves last, at cutover; shipping's endpoint stays in the monolith)
    assert meter["ownership"]["contexts_owned"] == taken
    owned = meter["ownership"]["endpoints"]
    assert f"{owned['owned']}/{owned['total']}" == endpoints
    assert f"contexts the services took: {', '.join(taken)}" in table


@pytest.mark.browser
@pytest.mark.skipif(not shutil.which(CHROMIUM), reason="needs Debian chromium at "
                    f"{CHROMIUM} (apt-get install -y chromium)")
def test_the_meter_chart_in_headless_chromium(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    handlers = {"monolith": answer_with("monolith"), "catalog": answer_with("catalog")}
    with running_proxy(tmp_path, handlers, routes=ROUTES) as running:
        drive(running, 10)
        wait_sampled(running, 10)
        time.sleep(1.2)  # a second sample, so there is a line to draw
        drive(running, 10)
        wait_sampled(running, 20)
        admin_url = f"http://{running.app.admin_address}"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
                "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking"])
            try:
                page = browser.new_page()
                page.set_default_timeout(10_000)
                page.goto(f"{admin_url}/login")  # the form posts the token (never in a URL)
                page.fill("input[name=token]", "secret-token")
                page.click("button")
                page.wait_for_url("**/dashboard")
                page.goto(f"{admin_url}/dashboard/meter")
                chart = page.locator("svg#meter-chart")
                box = chart.bounding_box()
                assert box is not None
                assert box["width"] > 300
                assert box["height"] > 100
                overall = page.locator("polyline[data-route='*']")
                assert overall.count() == 1
                assert overall.bounding_box()["width"] > 50  # type: ignore[index]
                assert "50.0%" in page.locator("#overall").inner_text()
                row = page.locator("#meter-routes tr[data-route='catalog'] .share")
                assert row.inner_text() == "100.0%"
                page.screenshot(path=str(tmp_path / "meter.png"))
                assert (tmp_path / "meter.png").stat().st_size > 1000
            finally:
                browser.close()


TWO_CONTEXTS = {"contexts": [
    {"name": "product", "models": ["store.Product"], "tables": ["store_product"],
     "endpoints": ["/api/products/", "/api/products/{pk}/"]},
    {"name": "order", "models": ["orders.Order", "orders.Line"],
     "tables": ["orders_order", "orders_line"],
     "endpoints": ["/api/orders/", "/api/orders/{pk}/", "/api/orders/{pk}/pay/"]}]}


def _admin_get(address: str, path: str, token: str | None = "secret-token",
               ) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(
                f"http://{address}{path}", headers=headers), timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_the_dashboard_shows_each_context_of_the_report_moved_or_not(tmp_path: Path) -> None:
    # given a proxy (real sockets on 127.0.0.1, port 0) whose routes file names the analysis
    # report in [admin] report, relative to the routes file; catalog is in service
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "report.json").write_text(json.dumps(TWO_CONTEXTS))
    handlers = {"monolith": answer_with("monolith"), "catalog": answer_with("catalog")}
    with running_proxy(tmp_path, handlers, routes=ROUTES,
                       extra='report = "report/report.json"') as running:
        admin = running.app.admin_address
        # when the dashboard's meter page and the admin API's meter are read
        status, page = _admin_get(admin, "/dashboard/meter")
        _, meter = _admin_get(admin, "/meter")
        # then every context of the report is on the page: product moved, order not yet
        assert status == 200
        assert "<tr data-context='product' data-moved='true'>" in page
        assert "<tr data-context='order' data-moved='false'>" in page
        assert "1 of 2 contexts moved: product" in page
        rows = {c["name"]: c for c in json.loads(meter)["ownership"]["contexts"]}
        assert rows["product"]["routes"] == {"in_service": 1, "total": 1}
        assert rows["order"]["moved"] is False
        # when the order context's route goes to service (reload reads the file again)
        text = running.config_path.read_text()
        running.config_path.write_text(text.rstrip() + '\nmode = "service"\ntarget = "catalog"\n')
        running.loop.run(_reload(running))
        status, page = _admin_get(admin, "/dashboard/meter")
        # then both contexts moved, and the same numbers reach `strangler status`
        assert "<tr data-context='order' data-moved='true'>" in page
        assert "2 of 2 contexts moved: order, product" in page
        # and the admin rules hold: no token, or a token in the URL, sees nothing
        assert _admin_get(admin, "/dashboard/meter", token=None)[0] == 401
        assert _admin_get(admin, "/dashboard/meter?token=secret-token", token=None)[0] == 401
        assert admin.startswith("127.0.0.1:")


async def _reload(running: Running) -> None:
    ok, message = running.app.reload(force=True)
    assert ok, message


def test_the_dashboard_says_why_there_are_no_contexts(tmp_path: Path) -> None:
    handlers = {"monolith": answer_with("monolith"), "catalog": answer_with("catalog")}
    with running_proxy(tmp_path, handlers, routes=ROUTES,
                       extra='report = "missing.json"') as running:
        status, page = _admin_get(running.app.admin_address, "/dashboard/meter")
    assert status == 200
    assert "id=meter-contexts-missing" in page
    assert "missing.json: cannot read the analysis report" in page


def test_status_reads_the_report_named_in_the_routes_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from proxy_harness import config_text, free_port
    (tmp_path / "report.json").write_text(json.dumps(TWO_CONTEXTS))
    path = tmp_path / "strangler.toml"
    path.write_text(config_text({"monolith": "http://127.0.0.1:1",
                                 "catalog": "http://127.0.0.1:2"}, ROUTES,
                                extra='report = "report.json"').replace(
        'listen = "127.0.0.1:0"\ntoken', f'listen = "127.0.0.1:{free_port()}"\ntoken'))
    main(["status", "--config", str(path)])
    out = capsys.readouterr().out
    assert "contexts the services took: product" in out
    assert "context order: not yet (routes in service 0/1, endpoints 0/3)" in out
    assert "context product: moved (routes in service 1/1, endpoints 2/2)" in out
    # a report named in the file but not written yet (`strangler demo --no-report`) is a note,
    # not an error
    (tmp_path / "report.json").unlink()
    main(["status", "--config", str(path)])
    out = capsys.readouterr().out
    assert "no contexts: " in out
    assert "report.json: cannot read the analysis report" in out
