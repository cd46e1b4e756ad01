"""What a route matches, and which routes an earlier one hides: pure functions over :class:`Match`.

Split from ``config.py`` (which declares the routes file) and ``routing.py`` (which decides per
request) so that both can use it: the config warns about unreachable routes at load time, the
route table compiles the same regexes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, TypeVar

from strangler_proxy.keys import key_doc


@dataclass(frozen=True, slots=True)
class Match:
    """``routes[].match``: exactly one of path_prefix / path / path_template, plus filters."""

    path_prefix: str | None = field(default=None, metadata=key_doc("the path starts with this"))
    path: str | None = field(default=None, metadata=key_doc("the path is exactly this"))
    path_template: str | None = field(default=None, metadata=key_doc(
        "`/api/products/{id}/`: each `{name}` is one non-empty segment"))
    methods: frozenset[str] = field(default=frozenset(), metadata=key_doc(
        "list of methods; empty or absent = any"))
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}),
        metadata=key_doc(
        '`{ "X-Beta" = "1" }`: every listed header must have this exact value'))

    @property
    def describe(self) -> str:
        """The path part as a template-like string (``/api/products/`` or ``/a/{id}/``)."""
        return self.path_prefix or self.path or self.path_template or "/"


class Matched(Protocol):
    """Anything with a match (a ``config.Route``)."""

    @property
    def match(self) -> Match: ...


R = TypeVar("R", bound=Matched)


def template_regex(template: str) -> str:
    """A regex for a path template: each ``{name}`` is one non-empty path segment.

    >>> re.fullmatch(template_regex("/api/products/{id}/"), "/api/products/42/") is not None
    True
    """
    parts = re.split(r"(\{[A-Za-z_][A-Za-z0-9_]*\})", template)
    return "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)


def match_regex(match: Match) -> str:
    """The path part of a match as a regex anchored at the start."""
    if match.path_prefix is not None:
        return re.escape(match.path_prefix)
    if match.path is not None:
        return re.escape(match.path) + r"\Z"
    return template_regex(match.path_template or "/") + r"\Z"


def literal_prefix(match: Match) -> str:
    """The literal start of the paths a match can match (up to the first ``{``)."""
    if match.path_prefix is not None:
        return match.path_prefix
    if match.path is not None:
        return match.path
    return (match.path_template or "").split("{", 1)[0]


def covers(earlier: Match, later: Match) -> bool:
    """True when every request ``later`` matches is matched by ``earlier`` first.

    >>> covers(Match(path_prefix="/api/"), Match(path="/api/x"))
    True
    >>> covers(Match(path="/api/x"), Match(path_prefix="/api/"))
    False
    """
    if earlier.methods and not (later.methods and later.methods <= earlier.methods):
        return False
    if any(later.headers.get(k) != v for k, v in earlier.headers.items()):
        return False
    if earlier.path_prefix is not None:
        return literal_prefix(later).startswith(earlier.path_prefix)
    if earlier.path is not None:
        return later.path == earlier.path
    if later.path is not None:
        return re.fullmatch(template_regex(earlier.path_template or ""), later.path) is not None
    return later.path_template == earlier.path_template


def unreachable_routes(routes: Sequence[R]) -> Iterator[tuple[int, R, R]]:
    """Yield ``(index, route, earlier_route)`` for each route an earlier one always shadows."""
    for index, later in enumerate(routes):
        for earlier in routes[:index]:
            if covers(earlier.match, later.match):
                yield index, later, earlier
                break


__all__ = ["Match", "Matched", "covers", "literal_prefix", "match_regex", "template_regex",
           "unreachable_routes"]
