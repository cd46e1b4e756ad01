"""Compare a monolith response with a service response: pure, no I/O.

:func:`compare` checks the status, the chosen headers and the body. Bodies are decoded
first (gzip, br, deflate), then compared by what they are: JSON structurally (missing and
extra keys, type changes, value changes, list length and ordering), text and HTML after
normalizing whitespace, anything else by digest. Every :class:`Difference` has a path and
a kind, so statistics can group them and a type change is never hidden by a rule that
ignores a noisy *value* (ignore and format rules still check the JSON type).

For a shadowed write, ``changes`` (a :class:`ChangeSet`) adds what the write did: the events
the service wrote and rolled back against the monolith's outbox events of the same request
(:func:`compare_changes`); each difference there is of kind ``change``.

Paths: body paths start with ``$`` (``$.items[2].price``); the status is ``status`` and a
header is ``headers.<name>``; a service that gave no answer is ``response``; changes are
``changes`` or ``changes.<aggregate type>:<id>.<event type>[.payload.<field>]``.

Kinds: ``status``, ``header``, ``missing`` (in the monolith's answer, not the service's),
``extra`` (the other way round), ``type``, ``value``, ``length``, ``order``, ``format``,
``text``, ``digest``, ``invalid_json``, ``decode``, ``truncated``, ``error``, ``change``.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import json
import math
import re
import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from itertools import zip_longest
from typing import Any, Final

import brotli

from strangler_proxy.exchange import Headers, RecordedResponse
from strangler_proxy.shadow.rules import (
    Keyed,
    Rule,
    Rules,
    Segment,
    State,
    active,
    advance,
    render_path,
)

MATCH: Final = "match"
MISMATCH: Final = "mismatch"
ERROR: Final = "error"
_MAX_VALUE_CHARS = 200


@dataclass(frozen=True, slots=True)
class Difference:
    """One way the service's answer differs from the monolith's."""

    path: str
    kind: str
    monolith_value: object = None
    service_value: object = None

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready mapping (the form stored in diff records)."""
        return {"path": self.path, "kind": self.kind, "monolith": self.monolith_value,
                "service": self.service_value}


@dataclass(frozen=True, slots=True)
class Comparison:
    """The verdict on one exchange and the differences behind it."""

    verdict: str  # "match" | "mismatch" | "error"
    differences: tuple[Difference, ...] = ()
    truncated: bool = False  # more differences existed than Rules.max_differences

    @property
    def matched(self) -> bool:
        """True when the service answered like the monolith."""
        return self.verdict == MATCH


DEFAULT_RULES: Final = Rules()
CHANGE: Final = "change"


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """What a shadowed write changed on each side, for :func:`compare_changes`.

    Events are contract 5 objects (``aggregate_type``, ``aggregate_id``, ``type``,
    ``payload``): ``monolith`` from its outbox, ``service`` from the rolled-back write
    (``X-Strangler-Shadow-Changes``). ``service_total`` is the service's count when its
    header was cut (``service_truncated``); ``error`` says why one side could not be read.
    """

    monolith: tuple[Mapping[str, Any], ...] = ()
    service: tuple[Mapping[str, Any], ...] = ()
    service_truncated: bool = False
    service_total: int = 0
    error: str = ""


class _Collector:
    """Differences found so far, capped so a huge body cannot make a huge record."""

    __slots__ = ("items", "limit", "truncated")

    def __init__(self, limit: int) -> None:
        self.items: list[Difference] = []
        self.limit = limit
        self.truncated = False

    def add(self, path: str, kind: str, monolith: object, service: object) -> None:
        if len(self.items) >= self.limit:
            self.truncated = True
            return
        self.items.append(Difference(path, kind, _short(monolith), _short(service)))


def compare(monolith: RecordedResponse, service: RecordedResponse,
            rules: Rules = DEFAULT_RULES, changes: ChangeSet | None = None) -> Comparison:
    """Compare two responses under a route's rules (and a write's ``changes``, if given).

    >>> h = (("Content-Type", "application/json"),)
    >>> a = RecordedResponse(200, h, b'{"id": 1, "price": "9.50", "at": "x"}')
    >>> b = RecordedResponse(200, h, b'{"id": "1", "price": "9.50", "at": "y"}')
    >>> [(d.path, d.kind) for d in compare(a, b).differences]
    [('$.id', 'type'), ('$.at', 'value')]
    >>> from strangler_proxy.shadow.rules import compile_rules
    >>> compare(a, b, compile_rules({"ignore": ["at", "id"]})).differences[0].kind
    'type'
    """
    if monolith.error or service.error:
        return Comparison(ERROR, (Difference("response", "error", monolith.error or None,
                                             service.error or None),))
    out = _Collector(rules.max_differences)
    if monolith.status != service.status:
        out.add("status", "status", monolith.status, service.status)
    _compare_headers(monolith.headers, service.headers, rules.headers, out)
    _compare_bodies(monolith, service, rules, out)
    if changes is not None:
        compare_changes(changes, out)
    verdict = MISMATCH if out.items else MATCH
    return Comparison(verdict, tuple(out.items), out.truncated)


# -- changes (shadowed writes) ------------------------------------------------------------------


_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)?")
WRITE_TIME_SECONDS: Final = 60.0  # two write times this close are the same write's


def compare_changes(changes: ChangeSet, out: _Collector | None = None) -> list[Difference]:
    """The ways the service's events differ from the monolith's, all of kind ``change``.

    Events are paired by aggregate type, event type and aggregate id, in order; ``created``
    events by type only (the two databases may give a new row different keys), and the keys
    so paired are accepted in ``*_id`` fields of later payloads. Payload fields are compared
    where both sides publish them; two timestamps less than :data:`WRITE_TIME_SECONDS` apart
    are taken as equal (a write's own time differs on every run; a business date set wrong
    is further off). Sequences and event ids are not compared (each side counts its own).

    >>> p = {"aggregate_type": "store.Product", "aggregate_id": "7", "type": "updated"}
    >>> a, b = dict(p, payload={"price": "9.50"}), dict(p, payload={"price": "9.5"})
    >>> compare_changes(ChangeSet((a,), (a,)))
    []
    >>> other = ChangeSet((a,), (b,))
    >>> [(d.path, d.monolith_value, d.service_value) for d in compare_changes(other)]
    [('changes.store.Product:7.updated.payload.price', '9.50', '9.5')]
    """
    collector = out if out is not None else _Collector(DEFAULT_RULES.max_differences)
    if changes.error:
        collector.add("changes", CHANGE, None, changes.error)
        return collector.items
    service_count = changes.service_total if changes.service_truncated else len(changes.service)
    if len(changes.monolith) != service_count:
        collector.add("changes", CHANGE, f"{len(changes.monolith)} events",
                      f"{service_count} events")
    keys: dict[str, str] = {}  # the service's key of a created row -> the monolith's
    for m_event, s_event in _paired(changes.monolith, changes.service):
        if m_event is None or s_event is None:
            if s_event is None and changes.service_truncated:
                continue  # cut from the service's header: not compared
            event = m_event if s_event is None else s_event
            assert event is not None
            collector.add(_change_path(event), CHANGE, _summary(m_event), _summary(s_event))
            continue
        if m_event.get("type") == "created":
            keys[str(s_event.get("aggregate_id"))] = str(m_event.get("aggregate_id"))
        _compare_payloads(m_event, s_event, keys, collector)
    return collector.items


def _paired(monolith: Sequence[Mapping[str, Any]], service: Sequence[Mapping[str, Any]]
            ) -> list[tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]]:
    def key(event: Mapping[str, Any]) -> tuple[str, str, str]:
        kind = str(event.get("type", ""))
        return (str(event.get("aggregate_type", "")), kind,
                "" if kind == "created" else str(event.get("aggregate_id", "")))

    sides: dict[tuple[str, str, str], tuple[list[Any], list[Any]]] = defaultdict(
        lambda: ([], []))
    for event in monolith:
        sides[key(event)][0].append(event)
    for event in service:
        sides[key(event)][1].append(event)
    # created first: their keys are needed to read the other events' foreign keys
    order = sorted(sides, key=lambda k: (k[1] != "created", ))
    return [pair for k in order for pair in zip_longest(*sides[k])]


def _compare_payloads(m_event: Mapping[str, Any], s_event: Mapping[str, Any],
                      keys: Mapping[str, str], out: _Collector) -> None:
    m_payload, s_payload = m_event.get("payload") or {}, s_event.get("payload") or {}
    if not isinstance(m_payload, Mapping) or not isinstance(s_payload, Mapping):
        if m_payload != s_payload:
            out.add(_change_path(m_event) + ".payload", CHANGE, m_payload, s_payload)
        return
    for name, m_value in m_payload.items():
        if name not in s_payload:
            continue
        s_value = s_payload[name]
        if _same_change_value(name, m_value, s_value, keys):
            continue
        out.add(f"{_change_path(m_event)}.payload.{name}", CHANGE, m_value, s_value)


def _same_change_value(name: str, m_value: Any, s_value: Any, keys: Mapping[str, str]) -> bool:
    if _same(m_value, s_value):
        return True
    if isinstance(m_value, str) and isinstance(s_value, str) \
            and _TIMESTAMP.fullmatch(m_value) and _TIMESTAMP.fullmatch(s_value):
        return _close_in_time(m_value, s_value)
    return name.endswith("_id") and s_value is not None \
        and keys.get(str(s_value)) == str(m_value)


def _close_in_time(a: str, b: str) -> bool:
    """Two ISO-8601 times within :data:`WRITE_TIME_SECONDS` (naive ones read as UTC).

    >>> _close_in_time("2026-12-05T10:00:00.5Z", "2026-12-05T10:00:02+00:00")
    True
    >>> _close_in_time("2026-12-05T10:00:00Z", "2026-12-06T10:00:00Z")
    False
    """
    try:
        times = [datetime.fromisoformat(t) for t in (a, b)]
    except ValueError:
        return False
    first, second = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in times)
    return abs((first - second).total_seconds()) < WRITE_TIME_SECONDS


def _change_path(event: Mapping[str, Any]) -> str:
    kind = str(event.get("type", ""))
    key = "new" if kind == "created" else str(event.get("aggregate_id", ""))
    return f"changes.{event.get('aggregate_type', '')}:{key}.{kind}"


def _summary(event: Mapping[str, Any] | None) -> object:
    if event is None:
        return None
    return {"aggregate_type": event.get("aggregate_type"),
            "aggregate_id": event.get("aggregate_id"), "type": event.get("type")}


# -- headers ----------------------------------------------------------------------------------


def header_value(headers: Headers, name: str) -> str | None:
    """All values of a header joined by ``", "`` (case-insensitive name), or None.

    >>> header_value((("A", "1"), ("a", "2")), "a")
    '1, 2'
    """
    lower = name.lower()
    values = [v for k, v in headers if k.lower() == lower]
    return ", ".join(values) if values else None


def _normal_header(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    value = " ".join(value.split())
    if name == "content-type":
        return normal_content_type(value)
    if name == "location":
        # Absolute Locations name the upstream's own host; the proxy rewrites them, so
        # compare what the client would follow: path and query.
        return re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*", "", value) or "/"
    return value


def normal_content_type(value: str) -> str:
    """A Content-Type for comparison: lower case, parameters sorted and unquoted, and
    ``charset=utf-8`` dropped for JSON (always UTF-8, RFC 8259 §8.1).

    >>> normal_content_type('application/json; charset="UTF-8"')
    'application/json'
    >>> normal_content_type("text/html;charset=latin-1 ; a=b")
    'text/html;a=b;charset=latin-1'
    """
    kind, *params = (part.strip() for part in value.lower().split(";"))
    pairs = sorted(p.replace(" ", "").replace('"', "") for p in params if p)
    if "json" in kind:
        pairs = [p for p in pairs if p not in ("charset=utf-8", "charset=utf8")]
    return ";".join([kind, *pairs])


def charset_of(headers: Headers) -> str:
    """The Content-Type's charset (``utf-8`` when absent or unknown to Python).

    >>> charset_of((("Content-Type", "text/plain; charset=ISO-8859-1"),))
    'iso-8859-1'
    """
    ctype = header_value(headers, "content-type") or ""
    found = re.search(r";\s*charset=\"?([A-Za-z0-9._:-]+)", ctype, re.IGNORECASE)
    name = found.group(1).lower() if found else "utf-8"
    try:
        codecs.lookup(name)
    except LookupError:
        return "utf-8"
    return name


def _compare_headers(a: Headers, b: Headers, names: tuple[str, ...], out: _Collector) -> None:
    for name in names:
        va = _normal_header(name, header_value(a, name))
        vb = _normal_header(name, header_value(b, name))
        if va != vb:
            out.add(f"headers.{name}", "header", va, vb)


# -- bodies -------------------------------------------------------------------------------------


def decode_body(response: RecordedResponse) -> tuple[bytes, str]:
    """The body with its Content-Encoding undone; the error text is "" when it decoded.

    >>> decode_body(RecordedResponse(200, (("Content-Encoding", "gzip"),),
    ...                              gzip.compress(b"hi")))
    (b'hi', '')
    """
    encoding = (header_value(response.headers, "content-encoding") or "").lower().strip()
    body = response.body
    if not body or encoding in ("", "identity") or response.body_truncated:
        return body, ""
    try:
        for step in reversed([e.strip() for e in encoding.split(",")]):
            body = _undo(step, body)
    except (OSError, zlib.error, brotli.error, EOFError) as exc:
        return response.body, f"cannot undo Content-Encoding {encoding}: {exc}"
    return body, ""


def _undo(encoding: str, body: bytes) -> bytes:
    if encoding in ("gzip", "x-gzip"):
        return gzip.decompress(body)
    if encoding == "br":
        return bytes(brotli.decompress(body))
    if encoding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:
            return zlib.decompress(body, -zlib.MAX_WBITS)  # raw deflate, as some servers send
    return body


def body_kind(headers: Headers) -> str:
    """``json``, ``html``, ``text`` or ``binary`` from the Content-Type.

    >>> body_kind((("content-type", "application/problem+json"),))
    'json'
    """
    ctype = (header_value(headers, "content-type") or "").lower()
    if "json" in ctype:
        return "json"
    if "html" in ctype or "xml" in ctype:
        return "html"
    if ctype.startswith("text/") or "javascript" in ctype or "x-www-form" in ctype:
        return "text"
    return "binary"


def _compare_bodies(monolith: RecordedResponse, service: RecordedResponse, rules: Rules,
                    out: _Collector) -> None:
    if monolith.body_truncated or service.body_truncated:
        _compare_whole(monolith, service, out)
        return
    body_a, err_a = decode_body(monolith)
    body_b, err_b = decode_body(service)
    if err_a or err_b:
        out.add("$", "decode", err_a or None, err_b or None)
    if body_a == body_b and not (err_a or err_b):
        return
    kind_a, kind_b = body_kind(monolith.headers), body_kind(service.headers)
    if kind_a == "json" or kind_b == "json":
        _compare_json_bodies(body_a, body_b, kind_a, kind_b, rules, out)
    elif kind_a in ("html", "text") and kind_b in ("html", "text"):
        _compare_text(body_a, body_b, kind_a == "html" or kind_b == "html", out,
                      (charset_of(monolith.headers), charset_of(service.headers)))
    else:
        _compare_digest(body_a, body_b, out)


def _whole(response: RecordedResponse) -> tuple[str, int]:
    """SHA-256 and length of the whole body: hashed while streaming past the cap, or here."""
    if response.body_truncated:
        return response.digest, response.size
    return hashlib.sha256(response.body).hexdigest(), len(response.body)


def _compare_whole(monolith: RecordedResponse, service: RecordedResponse,
                   out: _Collector) -> None:
    """Bodies past the cap: equal when their whole-body hashes are, else "differs beyond".

    Only the kept prefixes can be compared structurally, so the difference is reported on
    the body as a whole: where the kept bytes already differ, as ``digest``; where they are
    equal, as ``truncated`` "differs beyond N bytes" (N = the bytes kept and compared).
    """
    (digest_a, size_a), (digest_b, size_b) = _whole(monolith), _whole(service)
    if digest_a and digest_b and (digest_a, size_a) == (digest_b, size_b):
        return
    kept = min(len(monolith.body), len(service.body))
    if not digest_a or not digest_b:  # one side was cut without its whole body being seen
        out.add("$", "truncated", _size_note(monolith), _size_note(service))
    elif monolith.body[:kept] == service.body[:kept]:
        out.add("$", "truncated", f"differs beyond {kept} bytes: {size_a} bytes, "
                f"sha256 {digest_a[:16]}", f"{size_b} bytes, sha256 {digest_b[:16]}")
    else:
        out.add("$", "digest", f"{size_a} bytes, sha256 {digest_a[:16]}",
                f"{size_b} bytes, sha256 {digest_b[:16]}")


def _size_note(response: RecordedResponse) -> str:
    cut = " (truncated)" if response.body_truncated else ""
    return f"{len(response.body)} bytes{cut}"


_NOT_JSON = object()


def _json_float(text: str) -> float | Decimal:
    """A JSON number as a float, or as a Decimal when a float cannot hold it (``1e400``
    would be ``inf`` on both sides and compare equal to ``2e400``)."""
    value = float(text)
    return value if math.isfinite(value) else Decimal(text)


def _parse_json(body: bytes) -> tuple[Any, str]:
    if not body.strip():
        return _NOT_JSON, "empty body"
    try:
        return json.loads(body, parse_float=_json_float), ""
    except RecursionError:
        return _NOT_JSON, "nested too deep to compare"
    except UnicodeDecodeError:
        return _NOT_JSON, f"not UTF-8 ({len(body)} bytes, binary?)"
    except ValueError as exc:
        return _NOT_JSON, f"invalid JSON: {exc}"


def _compare_json_bodies(body_a: bytes, body_b: bytes, kind_a: str, kind_b: str, rules: Rules,
                         out: _Collector) -> None:
    value_a, err_a = _parse_json(body_a) if kind_a == "json" else (_NOT_JSON, kind_a)
    value_b, err_b = _parse_json(body_b) if kind_b == "json" else (_NOT_JSON, kind_b)
    if value_a is not _NOT_JSON and value_b is not _NOT_JSON:
        try:
            compare_json(value_a, value_b, rules, out)
        except RecursionError:
            # deeper than the comparator can walk: say so rather than drop the exchange
            if body_a != body_b:
                out.add("$", "digest", f"nested too deep to compare: {_digest(body_a)}",
                        _digest(body_b))
        return
    if value_a is _NOT_JSON and value_b is _NOT_JSON:
        if kind_a == kind_b == "json" and (body_a != body_b):
            out.add("$", "invalid_json", err_a, err_b)
        elif body_a != body_b:
            _compare_digest(body_a, body_b, out)
        return
    out.add("$", "invalid_json" if "JSON" in (err_a + err_b) or "UTF-8" in (err_a + err_b)
            or "empty" in (err_a + err_b) else "type",
            err_a or f"JSON {_jtype(value_a)}", err_b or f"JSON {_jtype(value_b)}")


def _compare_digest(body_a: bytes, body_b: bytes, out: _Collector) -> None:
    if body_a != body_b:
        out.add("$", "digest", _digest(body_a), _digest(body_b))


def _digest(body: bytes) -> str:
    return f"sha256:{hashlib.sha256(body).hexdigest()[:16]} ({len(body)} bytes)"


_SPACE = re.compile(r"[ \t\r\f\v]+")
_BETWEEN_TAGS = re.compile(r">\s*<")


def normalize_text(text: str, html: bool = False) -> list[str]:
    """Lines with runs of blanks collapsed, blank lines dropped; HTML split at tags.

    >>> normalize_text("<p>a   b</p>\\n\\n  <p>c</p>", html=True)
    ['<p>a b</p>', '<p>c</p>']
    """
    if html:
        text = _BETWEEN_TAGS.sub(">\n<", text)
    lines = (_SPACE.sub(" ", line).strip() for line in text.splitlines())
    return [line for line in lines if line]


def _compare_text(body_a: bytes, body_b: bytes, html: bool, out: _Collector,
                  charsets: tuple[str, str] = ("utf-8", "utf-8")) -> None:
    lines_a = normalize_text(body_a.decode(charsets[0], "replace"), html)
    lines_b = normalize_text(body_b.decode(charsets[1], "replace"), html)
    if lines_a == lines_b:
        return
    index = next((i for i, (x, y) in enumerate(zip(lines_a, lines_b, strict=False)) if x != y),
                 min(len(lines_a), len(lines_b)))
    first_a = lines_a[index] if index < len(lines_a) else "<end>"
    first_b = lines_b[index] if index < len(lines_b) else "<end>"
    out.add("$", "text", f"line {index + 1}: {first_a}", f"line {index + 1}: {first_b}")


# -- JSON --------------------------------------------------------------------------------------


def _jtype(value: Any) -> str:
    if value is None:
        return "null"
    if value is True or value is False:
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def compare_json(a: Any, b: Any, rules: Rules = DEFAULT_RULES,
                 out: _Collector | None = None) -> list[Difference]:
    """Structural differences between two parsed JSON values.

    >>> [(d.path, d.kind) for d in compare_json({"a": [1, 2], "b": 1}, {"a": [2, 1], "c": 1})]
    [('$.a', 'order'), ('$.b', 'missing'), ('$.c', 'extra')]
    """
    collector = out if out is not None else _Collector(rules.max_differences)
    if not _same(a, b):
        _Walker(rules, collector).walk(a, b, None, rules.start)
    return collector.items


_SCALARS: Final = frozenset({str, int, float, bool, type(None)})
_NUMBERS: Final = frozenset({int, float, Decimal})  # Decimal: beyond float (see _json_float)
Link = tuple[Any, Segment] | None  # a path as a linked list: (parent link, segment)


def _same(a: Any, b: Any) -> bool:
    """Equal with equal JSON types, at C speed where possible.

    ``==`` alone would call ``true`` equal to ``1``; equal ``repr`` rules that out (it also
    differs for key order or ``1`` vs ``1.0``, which then take the slow, exact walk).
    """
    ta = type(a)
    if ta is not type(b):
        return False
    if ta in _SCALARS:
        return bool(a == b)
    return bool(a == b) and repr(a) == repr(b)


def _flatten(link: Link) -> tuple[Segment, ...]:
    parts: list[Segment] = []
    while link is not None:
        link, segment = link
        parts.append(segment)
    return tuple(reversed(parts))


class _Walker:
    """One structural comparison: rules, the NFA memo and the collector."""

    __slots__ = ("rules", "out", "memo", "int_key")

    def __init__(self, rules: Rules, out: _Collector) -> None:
        self.rules = rules.rules
        self.out = out
        self.memo = rules.memo if len(rules.memo) < 20_000 else {}
        self.int_key = rules.literal_index  # False: every index steps the NFA alike

    def add(self, link: Link, kind: str, a: object, b: object) -> None:
        self.out.add(render_path(_flatten(link)), kind, a, b)

    def step(self, states: tuple[State, ...], segment: Segment) -> tuple[State, ...]:
        key = (states, segment if self.int_key or not isinstance(segment, int) else -1)
        found = self.memo.get(key)
        if found is None:
            found = self.memo[key] = advance(self.rules, states, segment)
        return found

    def active(self, states: tuple[State, ...]) -> tuple[Rule, ...]:
        found: tuple[Rule, ...] | None = self.memo.get(states)
        if found is None:
            found = self.memo[states] = active(self.rules, states)
        return found

    def walk(self, a: Any, b: Any, link: Link, states: tuple[State, ...]) -> None:
        ta, tb = type(a), type(b)
        if ta is not tb and not (ta in _NUMBERS and tb in _NUMBERS):
            self.add(link, "type", _typed(a, _jtype(a)), _typed(b, _jtype(b)))
            return
        here = self.active(states) if states else ()
        for rule in here:
            if rule.action == "ignore":
                return  # the type matched above; the value and everything below may vary
            if rule.action == "format":
                _check_format(a, b, rule, link, self)
                return
        if ta is dict:
            self.walk_object(a, b, link, states)
        elif ta is list:
            self.walk_array(a, b, link, states, here)
        elif ta in _NUMBERS and tb in _NUMBERS and a != b:
            if not any(r.action == "tolerance" and _within(a, b, r) for r in here):
                self.add(link, "value", a, b)
        elif a != b:
            self.add(link, "value", a, b)

    def walk_object(self, a: dict[str, Any], b: dict[str, Any], link: Link,
                    states: tuple[State, ...]) -> None:
        for key, va in a.items():
            if key not in b:
                self.add((link, key), "missing", va, None)
                continue
            vb = b[key]
            tva = type(va)
            if tva is type(vb) and (va == vb if tva in _SCALARS else _same(va, vb)):
                continue
            self.walk(va, vb, (link, key), self.step(states, key) if states else states)
        for key, vb in b.items():
            if key not in a:
                self.add((link, key), "extra", None, vb)

    def walk_array(self, a: list[Any], b: list[Any], link: Link, states: tuple[State, ...],
                   here: tuple[Rule, ...]) -> None:
        unordered = next((r for r in here if r.action == "unordered"), None)
        if unordered is not None and unordered.key:
            self.walk_keyed(a, b, unordered.key, link, states)
            return
        if unordered is not None:
            a, b = sorted(a, key=_canonical), sorted(b, key=_canonical)
        if len(a) != len(b):
            self.add(link, "length", len(a), len(b))
        outer, self.out = self.out, _Collector(self.out.limit)
        differing: list[int] = []  # indices whose elements gave differences
        try:
            for index, (x, y) in enumerate(zip(a, b, strict=False)):
                if not _same(x, y):
                    before = len(self.out.items)
                    self.walk(x, y, (link, index),
                              self.step(states, index) if states else states)
                    if len(self.out.items) != before or self.out.truncated:
                        differing.append(index)
            inner = self.out
        finally:
            self.out = outer
        # Elements equal at the same index cancel out, so the lists hold the same elements in
        # another order iff the differing positions do (checked on those positions only).
        if inner.items and len(a) == len(b) and unordered is None and _same_multiset(
                [a[i] for i in differing], [b[i] for i in differing]):
            self.add(link, "order", _short(a), _short(b))
            return
        for diff in inner.items:
            outer.add(diff.path, diff.kind, diff.monolith_value, diff.service_value)
        outer.truncated = outer.truncated or inner.truncated

    def walk_keyed(self, a: list[Any], b: list[Any], key: str, link: Link,
                   states: tuple[State, ...]) -> None:
        index_a = {_element_key(x, key): x for x in a}
        index_b = {_element_key(y, key): y for y in b}
        for k, x in index_a.items():
            seg = Keyed(key, k)
            if k not in index_b:
                self.add((link, seg), "missing", x, None)
            elif not _same(x, index_b[k]):
                self.walk(x, index_b[k], (link, seg), self.step(states, seg) if states
                          else states)
        for k, y in index_b.items():
            if k not in index_a:
                self.add((link, Keyed(key, k)), "extra", None, y)


def _check_format(a: Any, b: Any, rule: Rule, link: Link, walker: _Walker) -> None:
    pattern = rule.format
    assert pattern is not None
    ok_a = isinstance(a, str) and pattern.match(a) is not None
    ok_b = isinstance(b, str) and pattern.match(b) is not None
    if (ok_a and not ok_b) or (not ok_a and not ok_b and a != b):
        walker.add(link, "format", a, f"{b!r} is not {rule.format_name or 'valid'}")


def _within(a: float | Decimal, b: float | Decimal, rule: Rule) -> bool:
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        exact_a, exact_b = Decimal(str(a)), Decimal(str(b))
        tolerance = Decimal(str(rule.tolerance))
        bound = tolerance * max(abs(exact_a), abs(exact_b)) if rule.relative else tolerance
        return abs(exact_a - exact_b) <= bound
    limit = rule.tolerance * max(abs(a), abs(b)) if rule.relative else rule.tolerance
    return abs(a - b) <= limit + 1e-12


def _element_key(element: Any, key: str) -> str:
    if isinstance(element, dict) and key in element:
        return json.dumps(element[key], sort_keys=True)
    return "?" + _canonical(element)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _same_multiset(a: list[Any], b: list[Any]) -> bool:
    return sorted(map(_canonical, a)) == sorted(map(_canonical, b))


def _typed(value: Any, kind: str) -> object:
    return value if kind not in ("object", "array") else f"{kind}"


def _short(value: object) -> object:
    """Keep stored values small: long strings cut, containers summarized."""
    if isinstance(value, Decimal):
        return str(value)  # a number past float's range, kept exactly (and JSON-storable)
    if isinstance(value, str):
        return value if len(value) <= _MAX_VALUE_CHARS else value[:_MAX_VALUE_CHARS] + "…"
    if isinstance(value, dict | list):
        text = _canonical(value)
        return value if len(text) <= _MAX_VALUE_CHARS else text[:_MAX_VALUE_CHARS] + "…"
    return value
