"""The admin listener: status, routes (read and flip), metrics, health; bearer token for all.

A small asyncio-streams HTTP/1.1 server (off the hot path, so clarity over speed). Every
request needs ``Authorization: Bearer <token>`` or the ``strangler_admin`` session cookie
that the login form (``GET /login``, which posts the token in the body to ``POST /login``)
sets for the browser dashboard: the token is never in a URL, and the cookie holds a random
session id, not the token. The token is read from the routes file (or its environment
variable) on every request, so a changed ``admin.token`` takes effect on reload: the old one
and every session made with it stop working. Mutations are PUT/POST only; every error is
answered with its HTTP status (400 for a malformed request, 413 for a large body, 500 for
a failure of ours), never a silent close.

    GET  /routes            routes with mode, percent, target
    PUT  /routes/NAME       {"mode", "percent", "reason", "force", "since"}: same edit/gate/audit
                            as the CLI ("since": the gate's evidence window, e.g. "2h")
    GET  /status            route table version, last reload, last error, warnings
    GET  /metrics           Prometheus text (plus the shadow sink's, when it has any)
    GET  /healthz, /readyz  liveness, readiness
    POST /reload            re-read the routes file now
    GET  /evidence?window=S each route's live evidence per side over the last S seconds
    GET  /rollouts[/NAME]   guarded rollouts: step, status, latest check verdicts
    POST /rollouts/NAME     {"action": start|pause|resume|promote|abort, "who"}: audited
    GET  /meter             the strangulation meter (JSON)
    GET  /dashboard/meter   the meter's chart (SVG, no script)
    GET  /dashboard...      the shadow dashboard (``strangler_proxy.shadow.dashboard.handle``)
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from strangler_proxy.config import ProxyConfig, Route
from strangler_proxy.control.health import readiness
from strangler_proxy.control.reload import Reloader
from strangler_proxy.control.routes_edit import apply_route_change
from strangler_proxy.errors import ProxyError
from strangler_proxy.headers import REASONS, serialize_head
from strangler_proxy.routing import cookie_value

MAX_ADMIN_BODY = 1024 * 1024
MAX_SESSIONS = 1000
COOKIE = "strangler_admin"
log = logging.getLogger("strangler.admin")
LOGIN_FORM = b"""<!doctype html><title>strangler admin</title>
<form method="post" action="/login"><label>Admin token
<input type="password" name="token" autofocus></label> <button>Log in</button></form>
"""
Response = tuple[int, list[tuple[bytes, bytes]], bytes]


def _json(status: int, data: Any) -> Response:
    body = json.dumps(data, indent=2, sort_keys=True, default=str).encode() + b"\n"
    return status, [(b"Content-Type", b"application/json")], body


def _text(status: int, text: str, content_type: bytes = b"text/plain; charset=utf-8",
          ) -> Response:
    return status, [(b"Content-Type", content_type)], text.encode()


class Administered(Protocol):
    """What the admin API reads and drives: a :class:`~strangler_proxy.control.app.ProxyApp`."""

    ready: bool
    config_path: Path
    reloader: Reloader
    environ: dict[str, str]

    @property
    def config(self) -> ProxyConfig: ...
    def status(self) -> dict[str, Any]: ...
    def routes_view(self) -> dict[str, Any]: ...
    def metrics_text(self) -> str: ...
    async def rollout_action(self, name: str, action: str, who: str) -> dict[str, Any]: ...
    def rollouts_view(self, name: str | None = None) -> dict[str, Any]: ...
    def evidence_view(self, seconds: float) -> dict[str, Any]: ...
    def meter_view(self, report: dict[str, Any] | None = None,
                   step: float = 60.0) -> dict[str, Any]: ...
    def meter_html(self) -> str: ...
    def reload(self, force: bool = False) -> tuple[bool, str]: ...


class AdminServer:
    """Serves the admin API of one :class:`Administered` app."""

    def __init__(self, app: Administered, token: str) -> None:
        self.app = app
        self._token = token
        self.sessions: set[str] = set()
        self.server: asyncio.Server | None = None

    @property
    def token(self) -> str:
        """The admin token of the active routes file; a change ends every session."""
        current = self.app.config.admin.resolve_token(self.app.environ)
        if current and current != self._token:
            self._token = current
            self.sessions.clear()
        return self._token

    async def start(self, sock: Any) -> None:
        """Serve on an already bound socket."""
        self.server = await asyncio.start_server(self._serve, sock=sock)

    async def stop(self) -> None:
        """Stop accepting and close the listener."""
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    request = await _read_request(reader)
                except _BadRequest as exc:
                    _answer(writer, *_json(exc.status, {"error": str(exc)}), close=True)
                    await writer.drain()
                    break
                if request is None:
                    break
                method, target, headers, body = request
                try:
                    status, extra, payload = await self.handle(method, target, headers, body)
                except ProxyError as exc:
                    status, extra, payload = _json(409, {"error": str(exc)})
                except Exception as exc:  # noqa: BLE001 - answered, not a silent close
                    log.exception("admin %s %s failed", method, target)
                    status, extra, payload = _json(500, {"error": f"{type(exc).__name__}: "
                                                              f"{exc}"})
                _answer(writer, status, extra, payload)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def authorized(self, headers: dict[str, str]) -> bool:
        """True when the bearer token, or a session cookie made with it, comes along."""
        token = self.token  # read first: a changed token has just ended the old sessions
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(),
                                                              token.encode()):
            return True
        cookie = cookie_value(headers.get("cookie", ""), COOKIE)
        return cookie is not None and cookie in self.sessions

    async def handle(self, method: str, target: str, headers: dict[str, str],
                     body: bytes) -> Response:
        """Dispatch one admin request."""
        parts = urlsplit(target)
        path, query = unquote(parts.path), parts.query
        if path == "/login":
            if method == "GET":
                if "token" in parse_qs(query):
                    return _text(400, "400 Bad Request: a token in a URL ends up in logs and "
                                 "history; use the form at GET /login (it POSTs the token)\n")
                return _text(200, LOGIN_FORM.decode(), b"text/html; charset=utf-8")
            if method == "POST":
                return self._login(parse_qs(body.decode("latin-1")).get("token", [""])[0])
            return _json(405, {"error": "use GET /login for the form, POST /login to log in"})
        if not self.authorized(headers):
            return 401, [(b"WWW-Authenticate", b'Bearer realm="strangler admin"'),
                         (b"Content-Type", b"text/plain")], \
                b"401 Unauthorized: send Authorization: Bearer <admin token>\n"
        return await self._route(method, path, query, body)

    async def _route(self, method: str, path: str, query: str, body: bytes) -> Response:
        app = self.app
        if path == "/healthz" and method == "GET":
            return _text(200, "ok\n")
        if path == "/readyz" and method == "GET":
            ok, upstreams = await readiness(app.config)
            ready = app.ready and ok
            return _json(200 if ready else 503, {"ready": ready, "upstreams": upstreams})
        if path == "/status" and method == "GET":
            return _json(200, app.status())
        if path == "/metrics" and method == "GET":
            return _text(200, app.metrics_text(), b"text/plain; version=0.0.4")
        if path == "/routes" and method == "GET":
            return _json(200, app.routes_view())
        if path.startswith("/routes/"):
            if method != "PUT":
                return _json(405, {"error": "use PUT to change a route"})
            return await self._set_route(path.removeprefix("/routes/"), body)
        if path == "/reload":
            if method != "POST":
                return _json(405, {"error": "use POST to reload"})
            ok, message = app.reload(force=True)
            return _json(200 if ok else 422, {"ok": ok, "message": message,
                                              "version": app.reloader.status.version})
        if path in ("/evidence", "/meter", "/dashboard/meter") or path.startswith("/rollouts"):
            return await self._rollouts(method, path, query, body)
        if path.startswith("/dashboard") and method == "GET":
            return await self._dashboard(path, query)
        return _json(404, {"error": f"no admin endpoint {method} {path}"})

    async def _set_route(self, name: str, body: bytes) -> Response:
        try:
            data = json.loads(body or b"{}")
        except json.JSONDecodeError as exc:
            return _json(400, {"error": f"body is not JSON: {exc}"})
        if not isinstance(data, dict) or (unknown := set(data) - {"mode", "percent", "reason",
                                                                    "force", "since"}):
            return _json(400, {"error": "body must be an object with mode, percent, reason, "
                               "force, since", "unknown": sorted(unknown)
                               if isinstance(data, dict) else []})
        force = data.get("force", False)
        if not isinstance(force, bool):
            return _json(400, {"error": f"force {force!r} must be true or false (JSON), "
                               "not a string"})
        reason = data.get("reason", "")
        if not isinstance(reason, str):
            return _json(400, {"error": f"reason {reason!r} must be a string"})
        percent = data.get("percent")
        if percent is not None and (isinstance(percent, bool)
                                    or not isinstance(percent, int | float)):
            return _json(400, {"error": f"percent {percent!r} must be a number"})
        since = data.get("since")
        if since is not None and not isinstance(since, str):
            return _json(400, {"error": f"since {since!r} must be a string such as \"2h\" or "
                               "an ISO-8601 time"})
        app = self.app
        change = await asyncio.to_thread(
            apply_route_change, app.config_path, name, data.get("mode"), percent,
            reason, force,
            app.config.admin.token_name, "admin", None, since)
        ok, message = app.reload(force=True)
        result = {"route": change.route, "old": change.old, "new": change.new,
                  "changed": change.changed, "forced": change.forced,
                  "gate": change.gate_reason, "since": change.since, "reloaded": ok,
                  "message": message,
                  "version": app.reloader.status.version}
        return _json(200 if ok else 422, result)

    async def _rollouts(self, method: str, path: str, query: str, body: bytes) -> Response:
        app = self.app
        params = parse_qs(query)
        if method == "GET" and path == "/evidence":
            try:
                seconds = float(params.get("window", ["60"])[0])
            except ValueError:
                return _json(400, {"error": "window must be a number of seconds"})
            return _json(200, app.evidence_view(seconds))
        if method == "GET" and path == "/meter":
            return _json(200, app.meter_view())
        if method == "GET" and path == "/dashboard/meter":
            return _text(200, app.meter_html(), b"text/html; charset=utf-8")
        name = path.removeprefix("/rollouts").strip("/") or None
        if method == "GET":
            return _json(200, app.rollouts_view(name))
        if method != "POST" or name is None:
            return _json(405, {"error": "use POST /rollouts/NAME with {\"action\": ...}"})
        try:
            data = json.loads(body or b"{}")
        except json.JSONDecodeError as exc:
            return _json(400, {"error": f"body is not JSON: {exc}"})
        if not isinstance(data, dict) or not isinstance(data.get("action"), str):
            return _json(400, {"error": "body must be {\"action\": \"start\"|...}"})
        who = str(data.get("who") or app.config.admin.token_name)
        return _json(200, await app.rollout_action(name, data["action"], who))

    def _login(self, token: str) -> Response:
        if not token or not hmac.compare_digest(token.encode(), self.token.encode()):
            return _text(401, "401 Unauthorized: wrong or missing token\n")
        session = secrets.token_urlsafe(32)
        if len(self.sessions) >= MAX_SESSIONS:
            self.sessions.pop()
        self.sessions.add(session)
        cookie = f"{COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/".encode()
        return 303, [(b"Set-Cookie", cookie), (b"Location", b"/dashboard")], b""

    async def _dashboard(self, path: str, query: str) -> Response:
        try:
            from strangler_proxy.shadow.dashboard import handle
        except ImportError:
            return _text(404, "the shadow dashboard is not installed\n")
        # The dashboard reads the diff store (SQLite or PostgreSQL): off the event loop, so a
        # slow query never stalls the forwarding of the worker serving the admin listener.
        status, content_type, payload = await asyncio.to_thread(
            handle, path, query, self.app.config)
        return status, [(b"Content-Type", content_type.encode())], payload


class _BadRequest(Exception):  # noqa: N818 - answered with its status, never escapes
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _answer(writer: asyncio.StreamWriter, status: int, extra: list[tuple[bytes, bytes]],
            payload: bytes, close: bool = False) -> None:
    line = b"HTTP/1.1 %d %s" % (status, REASONS.get(status, b"-"))
    extra = [*extra, (b"Content-Length", str(len(payload)).encode()),
             (b"Cache-Control", b"no-store")]
    if close:
        extra.append((b"Connection", b"close"))
    writer.write(serialize_head(line, extra) + payload)


async def _read_request(reader: asyncio.StreamReader,
                        ) -> tuple[str, str, dict[str, str], bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        raise _BadRequest(431, "admin request head too large") from None
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, _version = lines[0].split(" ", 2)
    except ValueError:
        raise _BadRequest(400, f"malformed request line {lines[0][:100]!r}") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    try:
        length = int(headers.get("content-length", "0") or 0)
    except ValueError:
        raise _BadRequest(400, "Content-Length is not a number") from None
    if "transfer-encoding" in headers:
        raise _BadRequest(411, "send the body with Content-Length, not chunked")
    if length > MAX_ADMIN_BODY:
        raise _BadRequest(413, f"admin request body over {MAX_ADMIN_BODY} bytes")
    body = await reader.readexactly(length) if length else b""
    return method, target, headers, body


def route_record(route: Route) -> dict[str, Any]:
    """A route as plain JSON-able data (for ``GET /routes`` and ``routes list --json``)."""
    match = route.match
    return {
        "name": route.name, "mode": route.mode, "percent": route.percent,
        "target": route.target, "sticky": route.sticky, "group": route.group,
        "fallback": route.fallback, "websocket": route.websocket, "line": route.line,
        "match": {k: v for k, v in {
            "path_prefix": match.path_prefix, "path": match.path,
            "path_template": match.path_template, "methods": sorted(match.methods),
            "headers": dict(match.headers)}.items() if v},
    }
