"""Per-route comparison rules, compiled once: JSONPath-like patterns and what they mean.

A route's ``compare`` table (``strangler_proxy.config.CompareRules``) holds patterns as
strings; :func:`compile_rules` turns them into :class:`Rules`, which the comparator walks
alongside the JSON body as a tiny NFA (one state per pattern and position), so the cost of
rules is paid only where a pattern can still match.

Pattern syntax (a subset of JSONPath):

- ``served_at`` or ``$.served_at``: a top-level key (a bare name is a top-level key)
- ``items[*].updated_at``: every element of a list; ``items[0]``: one element
- ``meta.*``: any key of an object; ``$..updated_at``: a key at any depth
- ``["odd key"]``: a quoted key

Actions: ``ignore`` (the value is not compared; its JSON *type* and presence still are),
``tolerance`` (numbers equal within an absolute amount; a string ``"1%"`` is relative, for
callers that pass plain mappings), ``unordered`` (a list compared as a set, matched by a
key field or, with key ``""``, as a multiset), ``formats`` (``iso8601``, ``uuid``,
``regex:PATTERN``: both values must have the shape; the values themselves may differ).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from strangler_proxy.config import CompareRules

# Segments of a concrete path: str = object key, int = list index, Keyed = list element
# matched by key in an unordered list.


@dataclass(frozen=True, slots=True)
class Keyed:
    """A list element found by its key field in an order-insensitive list (``[id=3]``)."""

    key: str
    value: str


Segment = str | int | Keyed


class _Wild:
    """Pattern tokens that are not literal keys or indices."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


ANY_KEY: Final = _Wild("*")
ANY_INDEX: Final = _Wild("[*]")
DESCEND: Final = _Wild("..")

PatternToken = str | int | _Wild

DEFAULT_HEADERS: Final = ("content-type", "location", "cache-control")
FORMAT_NAMES: Final = ("iso8601", "uuid")

_ISO8601 = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                   r"[0-9a-fA-F]{12}$")
_TOKEN = re.compile(r"""\.\.|\.|\[\*\]|\[(-?\d+)\]|\[(?:"([^"]*)"|'([^']*)')\]|\*|[^.\[\]]+""")


class RuleError(ValueError):
    """A pattern or format in a route's compare rules cannot be compiled."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled pattern and its action."""

    pattern: str
    tokens: tuple[PatternToken, ...]
    action: str  # "ignore" | "tolerance" | "unordered" | "format"
    tolerance: float = 0.0
    relative: bool = False
    key: str = ""  # unordered: the key field, "" for a multiset
    format: re.Pattern[str] | None = None
    format_name: str = ""


@dataclass(frozen=True, slots=True)
class Rules:
    """All rules of one route, ready for the comparator."""

    rules: tuple[Rule, ...] = ()
    headers: tuple[str, ...] = DEFAULT_HEADERS
    max_differences: int = 100
    start: tuple[tuple[int, int], ...] = field(default=())
    literal_index: bool = False  # some pattern names a list index such as items[0]
    # NFA steps already taken, shared by every comparison under these rules (a cache, not
    # state: the comparator trims it when it grows)
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def empty(self) -> bool:
        """True when no body rule exists (the comparator skips all rule bookkeeping)."""
        return not self.rules


def parse_pattern(pattern: str) -> tuple[PatternToken, ...]:
    """Split a JSONPath-like pattern into tokens; a bare leading name is a top-level key.

    >>> parse_pattern("items[*].updated_at")
    ('items', [*], 'updated_at')
    >>> parse_pattern("$..id")
    (.., 'id')
    >>> parse_pattern('$["a b"][2]')
    ('a b', 2)
    """
    text = pattern.strip()
    if text.startswith("$"):
        text = text[1:]
    if not text:
        raise RuleError(f"{pattern!r}: empty path; write a key such as \"served_at\"")
    tokens: list[PatternToken] = []
    pos = 0
    for match in _TOKEN.finditer(text):
        if match.start() != pos:
            raise RuleError(f"{pattern!r}: cannot read {text[pos:match.start()]!r}")
        pos = match.end()
        token = match.group(0)
        if token == ".":
            continue
        tokens.append(_token(match, token))
    if pos != len(text):
        raise RuleError(f"{pattern!r}: cannot read {text[pos:]!r}")
    if not tokens or tokens[-1] is DESCEND:
        raise RuleError(f"{pattern!r}: a path cannot end with '..'")
    return tuple(tokens)


def _token(match: re.Match[str], token: str) -> PatternToken:
    if token == "..":
        return DESCEND
    if token == "[*]":
        return ANY_INDEX
    if token == "*":
        return ANY_KEY
    if match.group(1) is not None:
        return int(match.group(1))
    quoted = match.group(2) if match.group(2) is not None else match.group(3)
    return quoted if quoted is not None else token


def format_regex(spec: str) -> re.Pattern[str]:
    """The regular expression for a format rule (``iso8601``, ``uuid``, ``regex:...``).

    >>> bool(format_regex("iso8601").match("2024-05-01T10:00:00.123Z"))
    True
    >>> bool(format_regex("uuid").match("not-a-uuid"))
    False
    """
    if spec == "iso8601":
        return _ISO8601
    if spec == "uuid":
        return _UUID
    if spec.startswith("regex:"):
        try:
            return re.compile(spec[6:])
        except re.error as exc:
            raise RuleError(f"format {spec!r}: bad regex: {exc}") from None
    raise RuleError(f"format {spec!r}: use \"iso8601\", \"uuid\" or \"regex:PATTERN\"")


def compile_rules(compare: CompareRules | Mapping[str, Any] | None = None,
                  max_differences: int = 100) -> Rules:
    """Compile a route's ``compare`` table (config object or plain mapping) into :class:`Rules`.

    >>> r = compile_rules({"ignore": ["served_at"], "tolerance": {"price": 0.01}})
    >>> [(x.pattern, x.action) for x in r.rules]
    [('served_at', 'ignore'), ('price', 'tolerance')]
    """
    if compare is None:
        return Rules(max_differences=max_differences)
    get = compare.get if isinstance(compare, Mapping) else lambda k, d=None: getattr(
        compare, k, d)
    rules: list[Rule] = [Rule(p, parse_pattern(p), "ignore") for p in get("ignore", ()) or ()]
    rules += [_tolerance_rule(p, v) for p, v in _items(get("tolerance", {}))]
    rules += [Rule(p, parse_pattern(p), "unordered", key=str(k or ""))
              for p, k in _items(get("unordered", {}))]
    rules += [Rule(p, parse_pattern(p), "format", format=format_regex(str(f)),
                   format_name=str(f)) for p, f in _items(get("formats", {}))]
    headers = tuple(h.lower() for h in (get("headers", ()) or ())) or DEFAULT_HEADERS
    start = advance_start(tuple(rules))
    literal = any(isinstance(t, int) for r in rules for t in r.tokens)
    return Rules(tuple(rules), headers, max_differences, start, literal)


def _items(value: Any) -> Iterable[tuple[str, Any]]:
    if not value:
        return ()
    if isinstance(value, Mapping):
        return value.items()
    # a list of paths (unordered = ["tags"]) means no key
    return ((str(v), "") for v in value)


def _tolerance_rule(pattern: str, value: Any) -> Rule:
    text = str(value).strip()
    relative = text.endswith("%")
    try:
        amount = float(text[:-1]) / 100 if relative else float(text)
    except ValueError:
        raise RuleError(f"tolerance {pattern!r}: {value!r} is not a number or \"N%\"") from None
    return Rule(pattern, parse_pattern(pattern), "tolerance", tolerance=amount,
                relative=relative)


# -- the NFA over patterns -------------------------------------------------------------------

State = tuple[int, int]  # (rule index, position in its tokens)


def _closure(rules: tuple[Rule, ...], states: Iterable[State]) -> tuple[State, ...]:
    """Add the states reachable by letting a ``..`` match zero segments."""
    out: list[State] = []
    for rule_index, pos in states:
        out.append((rule_index, pos))
        tokens = rules[rule_index].tokens
        while pos < len(tokens) and tokens[pos] is DESCEND:
            pos += 1
            out.append((rule_index, pos))
    return tuple(dict.fromkeys(out))


def advance_start(rules: tuple[Rule, ...]) -> tuple[State, ...]:
    """The states at the root of a body."""
    return _closure(rules, ((i, 0) for i in range(len(rules))))


def advance(rules: tuple[Rule, ...], states: tuple[State, ...],
            segment: Segment) -> tuple[State, ...]:
    """The states after stepping into ``segment`` (a key, an index or a keyed element)."""
    if not states:
        return states
    nxt: list[State] = []
    for rule_index, pos in states:
        tokens = rules[rule_index].tokens
        if pos >= len(tokens):
            continue
        token = tokens[pos]
        if token is DESCEND:
            nxt.append((rule_index, pos))  # '..' also swallows this segment
            continue
        if _token_matches(token, segment):
            nxt.append((rule_index, pos + 1))
    return _closure(rules, nxt) if nxt else ()


def _token_matches(token: PatternToken, segment: Segment) -> bool:
    if isinstance(segment, str):
        return token is ANY_KEY or token == segment
    if token is ANY_INDEX:
        return True
    return isinstance(segment, int) and not isinstance(token, _Wild) and token == segment


def active(rules: tuple[Rule, ...], states: tuple[State, ...]) -> tuple[Rule, ...]:
    """The rules whose pattern ends exactly at the current node."""
    return tuple(rules[i] for i, pos in states if pos == len(rules[i].tokens))


# -- rendering paths ---------------------------------------------------------------------------

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def render_path(segments: Iterable[Segment], general: bool = False) -> str:
    """Render a concrete path as ``$.items[3].price``; ``general`` turns indices into ``[*]``.

    >>> render_path(("items", 3, "price"))
    '$.items[3].price'
    >>> render_path(("items", Keyed("id", "7"), "a b"), general=True)
    '$.items[*]["a b"]'
    """
    parts = ["$"]
    for seg in segments:
        if isinstance(seg, str):
            parts.append(f".{seg}" if _PLAIN_KEY.match(seg) else f'["{seg}"]')
        elif general:
            parts.append("[*]")
        elif isinstance(seg, Keyed):
            parts.append(f"[{seg.key}={seg.value}]")
        else:
            parts.append(f"[{seg}]")
    return "".join(parts)


_INDEX = re.compile(r"\[(-?\d+|[^\[\]=]+=[^\[\]]*)\]")


def generalize(path: str) -> str:
    """Replace list indices in a rendered path by ``[*]`` (statistics group by this).

    >>> generalize("$.items[3].tags[id=9].name")
    '$.items[*].tags[*].name'
    """
    return _INDEX.sub("[*]", path)
