"""The admin listener: token for everything, routes, flips, status, metrics, reload."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from proxy_harness import answer_with, raw_exchange, running_proxy

from strangler_proxy.config import parse_config

ROUTES = """
[[routes]]
name = "catalog"
match = { path_prefix = "/api/products/" }
mode = "monolith"
target = "catalog"
"""
AUTH = {"Authorization": "Bearer secret-token"}


@pytest.fixture
def run(tmp_path: Path):  # type: ignore[no-untyped-def]
    handlers = {"monolith": answer_with("monolith"), "catalog": answer_with("catalog")}
    with running_proxy(tmp_path, handlers, ROUTES) as running:
        yield running


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/routes"), ("PUT", "/routes/catalog"), ("GET", "/status"), ("GET", "/metrics"),
    ("GET", "/healthz"), ("GET", "/readyz"), ("POST", "/reload"), ("GET", "/dashboard"),
])
def test_admin_refuses_without_token(run, method: str, path: str) -> None:  # type: ignore[no-untyped-def]
    before = run.config_path.read_text()
    no_token = httpx.request(method, run.admin_url + path, json={"mode": "service"}, timeout=5)
    wrong = httpx.request(method, run.admin_url + path, json={"mode": "service"}, timeout=5,
                          headers={"Authorization": "Bearer nope"})
    assert no_token.status_code == 401
    assert wrong.status_code == 401
    assert run.config_path.read_text() == before


def test_status_routes_health(run) -> None:  # type: ignore[no-untyped-def]
    status = httpx.get(run.admin_url + "/status", headers=AUTH, timeout=5).json()
    routes = httpx.get(run.admin_url + "/routes", headers=AUTH, timeout=5).json()
    assert status["version"] == 1
    assert status["last_error"] is None
    assert routes["routes"][0]["name"] == "catalog"
    assert httpx.get(run.admin_url + "/healthz", headers=AUTH, timeout=5).text == "ok\n"
    assert httpx.get(run.admin_url + "/readyz", headers=AUTH, timeout=5).status_code == 200


def test_put_flips_the_route_through_the_file_with_audit(run) -> None:  # type: ignore[no-untyped-def]
    before = httpx.get(run.url + "/api/products/1", timeout=5).text
    got = httpx.put(run.admin_url + "/routes/catalog", headers=AUTH, timeout=5,
                    json={"mode": "service", "reason": "ready", "force": True})
    after = httpx.get(run.url + "/api/products/1", timeout=5).text
    assert got.status_code == 200, got.text
    assert got.json()["new"]["mode"] == "service"
    assert got.json()["version"] == 2
    assert (before, after) == ("monolith", "catalog")
    assert 'mode = "service"' in run.config_path.read_text()
    assert "# test routes file" in run.config_path.read_text()
    audit = (run.config_path.parent / "strangler.toml.audit.jsonl").read_text()
    assert '"via": "admin"' in audit
    assert '"who": "admin"' in audit


def test_put_rejects_bad_bodies(run) -> None:  # type: ignore[no-untyped-def]
    bad_mode = httpx.put(run.admin_url + "/routes/catalog", headers=AUTH, timeout=5,
                         json={"mode": "blue"})
    unknown = httpx.put(run.admin_url + "/routes/nope", headers=AUTH, timeout=5,
                        json={"mode": "monolith"})
    extra = httpx.put(run.admin_url + "/routes/catalog", headers=AUTH, timeout=5,
                      json={"mode": "monolith", "colour": 1})
    assert bad_mode.status_code == 409
    assert "not one of" in bad_mode.json()["error"]
    assert unknown.status_code == 409
    assert "no route named" in unknown.json()["error"]
    assert extra.status_code == 400
    assert httpx.get(run.admin_url + "/routes/catalog", headers=AUTH, timeout=5
                     ).status_code == 405


def test_reload_with_a_broken_file_keeps_the_last_good_table(run) -> None:  # type: ignore[no-untyped-def]
    run.config_path.write_text(run.config_path.read_text().replace('mode = "monolith"',
                                                                   'mode = "sideways"'))
    reload = httpx.post(run.admin_url + "/reload", headers=AUTH, timeout=5)
    status = httpx.get(run.admin_url + "/status", headers=AUTH, timeout=5).json()
    served = httpx.get(run.url + "/api/products/1", timeout=5)
    assert reload.status_code == 422
    assert "routes[0].mode: 'sideways'" in status["last_error"]
    assert status["version"] == 1
    assert served.text == "monolith"


def test_metrics_are_prometheus_text(run) -> None:  # type: ignore[no-untyped-def]
    httpx.get(run.url + "/api/products/1", timeout=5)
    text = httpx.get(run.admin_url + "/metrics", headers=AUTH, timeout=5).text
    assert 'strangler_requests_total{route="catalog",target="monolith",status="200"} 1' in text
    assert 'strangler_request_duration_seconds_count{route="catalog",target="monolith"} 1' in text
    assert "strangler_route_table_version 1" in text


def test_login_form_posts_the_token_and_the_cookie_is_a_session_not_the_token(
        run) -> None:  # type: ignore[no-untyped-def]
    form = httpx.get(run.admin_url + "/login", timeout=5)
    in_url = httpx.get(run.admin_url + "/login?token=secret-token", timeout=5)
    bad = httpx.post(run.admin_url + "/login", data={"token": "wrong"}, timeout=5)
    good = httpx.post(run.admin_url + "/login", data={"token": "secret-token"}, timeout=5)
    assert form.status_code == 200
    assert 'method="post"' in form.text
    assert in_url.status_code == 400
    assert "strangler_admin" not in in_url.headers.get("set-cookie", "")
    assert bad.status_code == 401
    assert good.status_code == 303
    cookie = good.cookies.get("strangler_admin")
    assert cookie
    assert "secret-token" not in cookie
    status = httpx.get(run.admin_url + "/status", cookies={"strangler_admin": cookie}, timeout=5)
    forged = httpx.get(run.admin_url + "/status", timeout=5,
                       cookies={"strangler_admin": "secret-token"})
    assert status.status_code == 200
    assert forged.status_code == 401


def test_a_changed_token_takes_effect_on_reload(run) -> None:  # type: ignore[no-untyped-def]
    login = httpx.post(run.admin_url + "/login", data={"token": "secret-token"}, timeout=5)
    cookies = {"strangler_admin": login.cookies["strangler_admin"]}
    run.config_path.write_text(run.config_path.read_text().replace(
        'token = "secret-token"', 'token = "a-new-token-0123456789"'))
    assert run.loop.call(lambda: run.app.reload(force=True))[0]
    old = httpx.get(run.admin_url + "/status", headers=AUTH, timeout=5)
    session = httpx.get(run.admin_url + "/status", cookies=cookies, timeout=5)
    new = httpx.get(run.admin_url + "/status", timeout=5,
                    headers={"Authorization": "Bearer a-new-token-0123456789"})
    assert (old.status_code, session.status_code, new.status_code) == (401, 401, 200)


@pytest.mark.parametrize("force", ["false", "true", 1, None])
def test_force_must_be_a_json_boolean(run, force: object) -> None:  # type: ignore[no-untyped-def]
    before = run.config_path.read_text()
    got = httpx.put(run.admin_url + "/routes/catalog", headers=AUTH, timeout=5,
                    json={"mode": "service", "force": force})
    assert got.status_code == 400
    assert "force" in got.json()["error"]
    assert run.config_path.read_text() == before


@pytest.mark.parametrize(("raw", "status"), [
    (b"NONSENSE\r\n\r\n", 400),
    (b"PUT /routes/catalog HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
    (b"PUT /routes/catalog HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
    (b"PUT /routes/catalog HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413),
])
def test_admin_errors_get_an_http_status(run, raw: bytes, status: int) -> None:  # type: ignore[no-untyped-def]
    port = int(run.admin_url.rsplit(":", 1)[1])
    got = raw_exchange(port, raw)
    assert got.startswith(b"HTTP/1.1 %d " % status), got[:80]


def test_exposed_listeners_and_example_tokens_are_warned_about() -> None:
    config = parse_config('[proxy]\nlisten = "0.0.0.0:8080"\n[admin]\nlisten = "[::]:8081"\n'
                          'token = "change-me"\n[upstreams.monolith]\nurl = "http://h:1"\n')
    text = "\n".join(config.warnings)
    assert "proxy.listen = '0.0.0.0:8080' listens on every interface" in text
    assert "admin.listen = '[::]:8081' listens on every interface" in text
    assert "admin.token = 'change-me' is an example from the docs" in text


def test_readyz_follows_the_monolith_health_path(tmp_path: Path) -> None:
    import asyncio

    from proxy_harness import Request, response

    async def health(req: Request, transport: asyncio.Transport) -> None:
        transport.write(response(503 if req.url == "/down/" else 200, b"x"))
    handlers = {"monolith": health, "catalog": answer_with("catalog")}
    with running_proxy(tmp_path, handlers, ROUTES) as run:
        text = run.config_path.read_text()
        monolith_url = f'url = "{run.upstreams["monolith"].url}"'
        run.config_path.write_text(text.replace(monolith_url,
                                                monolith_url + '\nhealth_path = "/up/"'))
        assert run.loop.call(lambda: run.app.reload(force=True))[0]
        up = httpx.get(run.admin_url + "/readyz", headers=AUTH, timeout=5)
        run.config_path.write_text(text.replace(monolith_url,
                                                monolith_url + '\nhealth_path = "/down/"'))
        assert run.loop.call(lambda: run.app.reload(force=True))[0]
        down = httpx.get(run.admin_url + "/readyz", headers=AUTH, timeout=5)
    assert (up.status_code, up.json()["upstreams"]["monolith"]) == (200, "ok")
    assert up.json()["upstreams"]["catalog"] == "not configured"
    assert (down.status_code, down.json()["upstreams"]["monolith"]) == (503, "status 503")
