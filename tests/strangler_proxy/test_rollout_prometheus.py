"""The rollout's Prometheus check against a real Prometheus (Debian's package, 2.42).

The test serves a tiny exporter, starts its own prometheus on a port the OS chose, with a
temporary config and data directory scraping that exporter every 0.2 s, and kills it after.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from proxy_harness import free_port, stop_process_group

from strangler_proxy.control.rollout import prometheus_check
from strangler_proxy.rollout_plan import PrometheusCheck, RolloutPlan

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
pytestmark = pytest.mark.skipif(
    not Path(PROMETHEUS).exists(),
    reason="needs Debian's prometheus (apt-get install -y prometheus, or make sysdeps)")


class Exporter(BaseHTTPRequestHandler):
    value = 0.02  # what the exporter reports as the service's error ratio

    def do_GET(self) -> None:
        body = (f'# TYPE catalog_error_ratio gauge\ncatalog_error_ratio{{route="catalog"}} '
                f"{Exporter.value}\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[str]:
    exporter = ThreadingHTTPServer(("127.0.0.1", 0), Exporter)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 200ms\n  evaluation_interval: 200ms\n"
        "scrape_configs:\n  - job_name: catalog\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{exporter.server_address[1]}']\n")
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                query = f"{url}/api/v1/query?query=catalog_error_ratio"
                with urllib.request.urlopen(query, timeout=1) as reply:
                    if b'"value"' in reply.read():
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "prometheus did not scrape within 30 s"
            assert proc.poll() is None, "prometheus exited"
            time.sleep(0.2)
        yield url
    finally:
        stop_process_group(proc)
        exporter.shutdown()
        exporter.server_close()


def check(url: str, **bounds: float) -> PrometheusCheck:
    return PrometheusCheck(url=url, query='max(catalog_error_ratio{route="{route}"})', **bounds)


def test_theprometheus_check_reads_a_real_prometheus(prometheus: str) -> None:
    # given the exporter reports an error ratio of 0.02
    # when the check allows at most 0.05, then it passes with the number read
    ok = prometheus_check(RolloutPlan(prometheus=check(prometheus, max=0.05)), "catalog")
    assert ok.passed is True, ok.message
    assert ok.numbers["value"] == pytest.approx(0.02)
    assert 'max(catalog_error_ratio{route="catalog"})' in ok.message
    # when it allows at most 0.01, then it fails (and a rollout would roll back)
    bad = prometheus_check(RolloutPlan(prometheus=check(prometheus, max=0.01)), "catalog")
    assert bad.passed is False
    # and a query without an answer holds the step rather than acting
    none = prometheus_check(RolloutPlan(prometheus=PrometheusCheck(
        url=prometheus, query="absent_metric_xyz", max=1)), "catalog")
    assert none.passed is None


def test_an_unreachable_prometheus_holds_and_never_rolls_back() -> None:
    result = prometheus_check(RolloutPlan(prometheus=check(f"http://127.0.0.1:{free_port()}",
                                                            max=1)), "catalog")
    assert result.passed is None
    assert "no answer" in result.message
