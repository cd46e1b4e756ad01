"""Query-capture middleware: one JSON line per SQL statement (contract 4).

The format is documented in docs/query-log-format.md.

Off unless ``settings.STRANGLER_QUERY_LOG`` (or the env var of the same name) names a file.
Each gunicorn worker opens the file with O_APPEND and writes each line with a single
``os.write``, so lines from several workers interleave whole, never torn (POSIX appends of
one write are atomic for regular files on local file systems).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve


@dataclass(frozen=True)
class RequestContext:
    """What every line of one request shares."""

    request_id: str
    method: str
    route: str
    route_pattern: str
    path: str
    view: str


def request_context(request: HttpRequest) -> RequestContext:
    """Resolve the request's route once, up front (queries may run before the view)."""
    request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return RequestContext(request_id, request.method or "", "", "", request.path, "")
    return RequestContext(
        request_id=request_id,
        method=request.method or "",
        route=match.url_name or "",
        route_pattern=match.route or "",
        path=request.path,
        view=match._func_path,
    )


def log_line(
    ctx: RequestContext, sql: str, duration_ms: float, in_transaction: bool, alias: str
) -> bytes:
    """One JSON line (bytes, newline-terminated) for one statement."""
    record = {
        "ts": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "request_id": ctx.request_id,
        "method": ctx.method,
        "route": ctx.route,
        "route_pattern": ctx.route_pattern,
        "path": ctx.path,
        "view": ctx.view,
        "sql": sql,
        "duration_ms": round(duration_ms, 3),
        "in_transaction": in_transaction,
        "db_alias": alias,
    }
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


class _AppendOnlyFile:
    """A file descriptor per process and path, opened O_APPEND; one write per line."""

    _lock = threading.Lock()
    _fds: dict[str, int] = {}  # process-wide cache on purpose

    @classmethod
    def write(cls, path: str, data: bytes) -> None:
        fd = cls._fds.get(path)
        if fd is None:
            with cls._lock:
                fd = cls._fds.get(path)
                if fd is None:
                    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                    cls._fds[path] = fd
        os.write(fd, data)


def _wrapper(ctx: RequestContext, path: str) -> Callable[..., Any]:
    def capture(execute: Callable[..., Any], sql: str, params: Any, many: bool,
                context: dict[str, Any]) -> Any:
        connection = context["connection"]
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            elapsed = (time.perf_counter() - start) * 1000
            line = log_line(ctx, sql, elapsed, connection.in_atomic_block, connection.alias)
            _AppendOnlyFile.write(path, line)

    return capture


@contextmanager
def capturing(ctx: RequestContext, path: str) -> Iterator[None]:
    """Capture every statement on every database connection while the block runs."""
    with ExitStack() as stack:
        for alias in connections:
            stack.enter_context(connections[alias].execute_wrapper(_wrapper(ctx, path)))
        yield


def query_log_path() -> str:
    """The configured log path, or "" when capture is off."""
    return str(getattr(settings, "STRANGLER_QUERY_LOG", "") or "")


class QueryCaptureMiddleware:
    """Wraps each request in ``connection.execute_wrapper`` when capture is on."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = query_log_path()
        if not path:
            return self.get_response(request)
        ctx = request_context(request)
        with capturing(ctx, path):
            response = self.get_response(request)
        response["X-Request-ID"] = ctx.request_id
        return response
