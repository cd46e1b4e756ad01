"""Recorded traffic: record with mitmproxy, replay to the service, compare and store.

``strangler record`` runs ``mitmdump`` as a reverse proxy in front of the monolith and
writes a flow file. ``strangler replay`` reads flow files (``mitmproxy.io.FlowReader``) or
HAR files, keeps the exchanges the named route matches, sends each request to the route's
service (and, with ``--against-monolith``, to the monolith again, which then becomes the
baseline while its differences from the recording feed learned noise), compares with the
same comparator and stores records with ``origin = "replay"`` in the same diff store.

Bounded and paced: ``--limit`` exchanges at most, ``--rate`` requests per second, a few at a
time, each with the ``[shadow].timeout``. Unsafe methods are replayed to the service only
when the route sets ``shadow.writes = true``, and never to the monolith.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from strangler_proxy.config import MONOLITH, ProxyConfig, Route
from strangler_proxy.errors import ProxyError
from strangler_proxy.exchange import RecordedRequest, RecordedResponse, ShadowOffer
from strangler_proxy.routing import RouteTable
from strangler_proxy.shadow.client import HttpClient
from strangler_proxy.shadow.compare import compare
from strangler_proxy.shadow.rules import compile_rules
from strangler_proxy.shadow.sink import SAFE_METHODS
from strangler_proxy.shadow.store import DiffRecord, Redaction, open_config_store, redact_record
from strangler_proxy.shadow.worker import (
    WORKER_STARVED,
    body_limit,
    build_request,
    make_record,
    send,
    unsigned_write,
)

log = logging.getLogger("strangler.shadow")

_PSEUDO_OR_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer",
                            "upgrade", "proxy-connection"})


_RECORDER_START_SECONDS = 30.0


class ReplayError(ProxyError):
    """A flow or HAR file cannot be read, or the replay cannot run as asked."""


Exchange = tuple[RecordedRequest, RecordedResponse]


# -- reading recorded traffic ----------------------------------------------------------------


def load_exchanges(path: str | Path) -> Iterator[Exchange]:
    """Exchanges from a mitmproxy flow file or a HAR file (told apart by content)."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            head = handle.read(64).lstrip()
    except OSError as exc:
        raise ReplayError(f"{file}: cannot read: {exc.strerror or exc}") from None
    if head.startswith(b"{"):
        yield from _load_har(file)
    else:
        yield from _load_flows(file)


def _load_flows(file: Path) -> Iterator[Exchange]:
    from mitmproxy import http, io
    from mitmproxy.exceptions import FlowReadException

    with file.open("rb") as handle:
        try:
            for flow in io.FlowReader(handle).stream():
                if isinstance(flow, http.HTTPFlow) and flow.response is not None:
                    yield _from_flow(flow)
        except FlowReadException as exc:
            raise ReplayError(f"{file}: not a mitmproxy flow file or HAR file ({exc}); "
                              "make one with `strangler record`") from None


def _text_pairs(fields: Any) -> tuple[tuple[str, str], ...]:
    return tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in fields
                 if k.decode("latin-1").lower() not in _PSEUDO_OR_HOP)


def _from_flow(flow: Any) -> Exchange:
    request, response = flow.request, flow.response
    path, _, query = request.path.partition("?")
    started = request.timestamp_start or 0.0
    ended = response.timestamp_end or started
    recorded_request = RecordedRequest(
        request.method.upper(), path, query, _text_pairs(request.headers.fields),
        request.raw_content or b"", request_id=flow.id)
    recorded_response = RecordedResponse(
        response.status_code, _text_pairs(response.headers.fields), response.raw_content or b"",
        elapsed_ms=max(0.0, (ended - started) * 1000))
    return recorded_request, recorded_response


def _load_har(file: Path) -> Iterator[Exchange]:
    try:
        entries = json.loads(file.read_text(encoding="utf-8"))["log"]["entries"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ReplayError(f"{file}: not a HAR file (needs log.entries): {exc}") from None
    if not isinstance(entries, list):
        raise ReplayError(f"{file}: log.entries is a {type(entries).__name__}, not a list of "
                          "entries; export the HAR again from the browser or proxy")
    for index, entry in enumerate(entries):
        try:
            yield _from_har_entry(entry, index)
        except (KeyError, TypeError, ValueError) as exc:
            raise ReplayError(f"{file}: log.entries[{index}]: {exc!r} is missing or invalid "
                              "(each entry needs request.method, request.url and "
                              "response.status)") from None


def _har_headers(items: list[dict[str, str]], drop: frozenset[str] = frozenset(),
                 ) -> tuple[tuple[str, str], ...]:
    return tuple((h["name"], h["value"]) for h in items
                 if not h["name"].startswith(":")
                 and h["name"].lower() not in _PSEUDO_OR_HOP | drop)


def _from_har_entry(entry: dict[str, Any], index: int) -> Exchange:
    req, res = entry["request"], entry["response"]
    url = urlsplit(req["url"])
    post = req.get("postData") or {}
    request = RecordedRequest(
        req["method"].upper(), url.path or "/", url.query,
        _har_headers(req.get("headers", [])), str(post.get("text", "")).encode("utf-8"),
        request_id=f"har-{index}")
    content = res.get("content") or {}
    text = content.get("text") or ""
    body = base64.b64decode(text) if content.get("encoding") == "base64" else text.encode()
    # HAR stores the decoded body: its Content-Encoding header no longer applies
    response = RecordedResponse(
        int(res["status"]), _har_headers(res.get("headers", []),
                                         frozenset({"content-encoding", "content-length"})),
        body, elapsed_ms=float(entry.get("time") or 0.0))
    return request, response


# -- replaying -----------------------------------------------------------------------------------


@dataclass(slots=True)
class ReplaySummary:
    """What a replay did."""

    read: int = 0
    replayed: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"read": self.read, "replayed": self.replayed, "verdicts": dict(self.verdicts),
                "skipped": dict(self.skipped), "seconds": round(self.seconds, 3)}


def _route_matcher(config: ProxyConfig, route_name: str) -> Callable[[RecordedRequest], bool]:
    table = RouteTable(config)

    def matches(request: RecordedRequest) -> bool:
        headers = {k.lower().encode("latin-1"): v.encode("latin-1") for k, v in request.headers}
        return bool(table.match(request.method, request.path, headers).route.name == route_name)

    return matches


def select(config: ProxyConfig, route_name: str, exchanges: Iterator[Exchange], limit: int,
           summary: ReplaySummary) -> list[Exchange]:
    """The exchanges to replay: the route's, safe unless it opts in to writes, at most limit."""
    route = config.route(route_name)
    if route is None:
        names = ", ".join(r.name for r in config.routes) or "none"
        raise ReplayError(f"--route {route_name!r}: no such route in {config.source}; "
                          f"routes: {names}")
    if route.target == MONOLITH:
        raise ReplayError(f"route {route_name!r} has target = \"monolith\"; set its target to "
                          "the service's upstream to replay against it")
    matches = _route_matcher(config, route_name)
    chosen: list[Exchange] = []
    for request, response in exchanges:
        summary.read += 1
        if not matches(request):
            summary.skipped["other_route"] += 1
        elif request.method not in SAFE_METHODS and not route.shadow.writes:
            summary.skipped["unsafe_method"] += 1
        elif len(chosen) >= limit:
            summary.skipped["limit"] += 1
        else:
            chosen.append((request, response))
    return chosen


async def replay(config: ProxyConfig, route_name: str, exchanges: Iterator[Exchange],
                 rate: float = 10.0, limit: int = 1000, against_monolith: bool = False,
                 concurrency: int = 4) -> ReplaySummary:
    """Replay recorded exchanges to the route's service (paced), compare, store."""
    if rate <= 0 or limit < 0 or concurrency < 1:
        raise ReplayError("--rate must be > 0, --limit >= 0 and --concurrency >= 1")
    summary = ReplaySummary()
    chosen = select(config, route_name, exchanges, limit, summary)
    route = config.route(route_name)
    assert route is not None  # select() refused an unknown route
    store = await asyncio.to_thread(open_config_store, config)
    s = config.shadow
    redaction = Redaction.from_settings(s.redact_headers, s.redact_fields)
    rules = compile_rules(route.compare)
    gate = asyncio.Semaphore(concurrency)
    start = time.monotonic()
    records: list[DiffRecord] = []
    try:
        async with HttpClient(max_connections=concurrency * 2) as client:

            async def one(index: int, exchange: Exchange) -> None:
                await asyncio.sleep(max(0.0, start + index / rate - time.monotonic()))
                async with gate:
                    done = await _replay_one(client, config, route, exchange,
                                             against_monolith, rules)
                if not done:  # this process was starved: no verdict on the service
                    summary.skipped["starved"] += 1
                records.extend(done)

            await asyncio.gather(*(one(i, e) for i, e in enumerate(chosen)))
        for record in records:
            if record.kind == "service":
                summary.verdicts[record.verdict] += 1
        summary.replayed = len(chosen)
        await asyncio.to_thread(store.add, [redact_record(r, redaction) for r in records])
    finally:
        await asyncio.to_thread(store.close)
    summary.seconds = time.monotonic() - start
    return summary


async def _replay_one(client: HttpClient, config: ProxyConfig, route: Route, exchange: Exchange,
                      against_monolith: bool, rules: Any) -> list[DiffRecord]:
    request, recorded = exchange
    s = config.shadow
    secret = s.resolve_marker_secret(os.environ)
    if unsigned_write(request.method, secret):
        log.warning("replay: %s %s not sent: a write needs shadow.marker_secret so that the "
                    "service rolls it back", request.method, request.path)
        return []
    limit = body_limit(config, route)
    calls = [send(client, build_request(request, config.upstreams[route.target], route,
                                        secret=secret), s.timeout, limit)]
    again = against_monolith and request.method in SAFE_METHODS
    if again:
        calls.append(send(client, build_request(request, config.upstreams[MONOLITH],
                                                repeat=True, secret=secret), s.timeout, limit))
    answers = await asyncio.gather(*calls)
    if answers[0].error == WORKER_STARVED:
        return []
    baseline = answers[1] if again and not answers[1].error else recorded
    offer = ShadowOffer(route.name, route.match.describe, route.target, request, baseline)
    out = [make_record(offer, baseline, answers[0], compare(baseline, answers[0], rules),
                       "service", "replay")]
    if again and not answers[1].error:
        self_offer = ShadowOffer(route.name, route.match.describe, MONOLITH, request, recorded)
        out.append(make_record(self_offer, recorded, answers[1],
                               compare(recorded, answers[1], rules), "self", "replay"))
    return out


# -- recording ---------------------------------------------------------------------------------


def mitmdump_path() -> str:
    """The ``mitmdump`` next to this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "mitmdump"
    if beside.exists():
        return str(beside)
    found = shutil.which("mitmdump")
    if not found:
        raise ReplayError("mitmdump not found; install mitmproxy (pip install mitmproxy)")
    return found


def record_command(upstream: str, listen: str, out: str) -> list[str]:
    """The mitmdump command line that records ``upstream`` traffic into ``out``.

    >>> record_command("http://127.0.0.1:8000", "127.0.0.1:8090", "f.flows")[1:4]
    ['--mode', 'reverse:http://127.0.0.1:8000', '--listen-host']
    """
    parts = urlsplit(upstream)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ReplayError(f"--upstream {upstream!r} is not an http(s) URL, e.g. "
                          "http://127.0.0.1:8000")
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ReplayError(f"--listen {listen!r}: use HOST:PORT, e.g. 127.0.0.1:8090")
    return [mitmdump_path(), "--mode", f"reverse:{upstream}", "--listen-host", host or "127.0.0.1",
            "--listen-port", port, "--save-stream-file", out, "--set", "flow_detail=0",
            "--set", "termlog_verbosity=warn"]


def record(upstream: str, listen: str, out: str, duration: float | None = None,
           announce: Callable[[], None] | None = None) -> int:
    """Run mitmdump until interrupted (or ``duration`` seconds); returns its exit status.

    Checks first that ``listen`` is free and ``out`` can be written (one-line errors), then
    calls ``announce`` once mitmdump listens. The flow file is written to ``OUT.part`` and
    moved into place when recording stops, so ``out`` is never half-written.
    """
    partial = out + ".part"
    command = record_command(upstream, listen, partial)
    host, _, port = listen.rpartition(":")
    _check_listen_free(host or "127.0.0.1", int(port))
    _check_writable(Path(out))
    process = subprocess.Popen(command)  # noqa: S603 - our own argv, no shell
    try:
        _wait_listening(process, host or "127.0.0.1", int(port))
        if announce is not None:
            announce()
        status = process.wait(timeout=duration)
    except subprocess.TimeoutExpired:
        status = _stop(process)
    except KeyboardInterrupt:
        status = _stop(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
    if status == 0:
        if not Path(partial).exists():  # nothing recorded: an empty flow file
            Path(partial).write_bytes(b"")
        os.replace(partial, out)
    return status


def _check_listen_free(host: str, port: int) -> None:
    if port == 0:
        raise ReplayError("--listen needs a fixed port (clients must know where to connect), "
                          "e.g. 127.0.0.1:8090")
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ReplayError(f"--listen {host}:{port}: cannot listen there ({exc.strerror}); "
                              "stop what runs there or pick another port") from None


def _check_writable(out: Path) -> None:
    folder = out.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ReplayError(f"--out {out}: the directory {folder} does not exist or is not "
                          "writable; create it or pick another path")
    if out.is_dir():
        raise ReplayError(f"--out {out} is a directory; give a file name, e.g. traffic.flows")


def _wait_listening(process: subprocess.Popen[bytes], host: str, port: int,
                    seconds: float = _RECORDER_START_SECONDS) -> None:
    """Return once mitmdump accepts connections; its early exit or a stall is an error."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ReplayError(f"mitmdump exited ({process.returncode}) before it listened on "
                              f"{host}:{port}; its message is above")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.1)
    raise ReplayError(f"mitmdump did not listen on {host}:{port} within {seconds:.0f}s")


def _stop(process: subprocess.Popen[bytes]) -> int:
    """Stop mitmdump with SIGINT, so it closes the flow file cleanly."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
    return 0
