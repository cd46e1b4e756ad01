"""``strangler monolith workload --visitor-header NAME``: stable visitor keys for a sticky canary.

The shop here is a small recording HTTP server on 127.0.0.1 (port 0), not the monolith: the
test is about what the workload *sends* (its headers), which the monolith does not record.
It answers the product discovery and the sign-in like the shop and 404 to the rest, which
the workload takes in its stride (journeys go on). The walkthrough runs the same option
against the real shop behind the real proxy (docs/walkthrough.md, step 11).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from legacy_monolith.workload import SHOPPERS, STAFF, WorkloadError, WorkloadSpec, run_workload

Seen = list[tuple[str, str, dict[str, str]]]  # (method, path, headers)


def _handler(seen: Seen) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()

    class Recording(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out apart: no 40 ms waits

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            sent = self.rfile.read(length)
            with lock:
                seen.append((self.command, self.path, dict(self.headers.items())))
            if self.path.startswith("/api/products/?is_active=true"):
                status, body = 200, {"results": [{"id": i, "in_stock": True} for i in (1, 2)]}
            elif self.path == "/api/auth/token/":
                status, body = 200, {"token": f"t-{json.loads(sent)['username']}"}
            else:
                status, body = 404, {"detail": "not here"}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _answer  # noqa: N815 - http.server's names

        def log_message(self, *args: object) -> None:
            return

    return Recording


@pytest.fixture
def shop() -> Iterator[tuple[str, Seen]]:
    seen: Seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(seen))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _run(base: str, seen: Seen, header: str | None) -> Seen:
    seen.clear()
    run_workload(WorkloadSpec(base, requests=300, seed=7, concurrency=1, visitor_header=header))
    return [s for s in seen if "is_active=true" not in s[1]]  # discovery is not a visitor's


def test_every_request_names_its_visitor_and_the_requests_stay_the_same(
        shop: tuple[str, Seen]) -> None:
    base, seen = shop
    # given: the same seed, without and with the visitor header
    plain = _run(base, seen, None)
    marked = _run(base, seen, "X-Visitor")
    # then: the same requests in the same order; only the header is new
    assert [(m, p) for m, p, _ in marked] == [(m, p) for m, p, _ in plain]
    assert all("X-Visitor" not in h for _, _, h in plain)
    visitors = [h.get("X-Visitor") for _, _, h in marked]
    assert None not in visitors
    # and a signed-in request is its user's; anonymous ones are a pool of stable visitors
    users = {name for name, _ in (*SHOPPERS, STAFF)}
    signed_in = [h for _, _, h in marked if h.get("Authorization", "").startswith("Token ")]
    assert signed_in
    assert all(h["Authorization"] == f"Token t-{h['X-Visitor']}" for h in signed_in)
    assert {h["X-Visitor"] for h in signed_in} <= users
    anonymous = {v for v in visitors if v and v.startswith("visitor-")}
    assert 10 < len(anonymous) <= 100
    # and the same seed draws the same visitors
    assert [h.get("X-Visitor") for _, _, h in _run(base, seen, "X-Visitor")] == visitors


def test_a_bad_header_name_is_refused_before_any_request(shop: tuple[str, Seen]) -> None:
    base, seen = shop
    with pytest.raises(WorkloadError, match=r"--visitor-header 'X Visitor' is not an HTTP"):
        run_workload(WorkloadSpec(base, requests=5, visitor_header="X Visitor"))
    assert seen == []
