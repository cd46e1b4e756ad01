"""Routes-file keys, each declared once: a dataclass field whose metadata documents it.

A field of a settings dataclass (``config.ProxySettings``, ``config.Route``, ``match.Match``,
...) is a key of its TOML table when its metadata comes from :func:`key_doc`; the field gives the
key's name, type and default. From these follow the accepted keys the parser checks
(``config.SCHEMA``), the dataclass the parser fills, and the key tables in ``docs/config.md``
(:func:`key_table`; ``tests/docs/test_config_doc.py`` fails when the doc drifts). Range and
format checks stay in the parser, next to the error message each one gives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, fields, is_dataclass
from typing import Any

KEY = "strangler.key"


@dataclass(frozen=True, slots=True)
class KeyDoc:
    """How ``docs/config.md`` describes one key."""

    meaning: str
    kind: str = ""  # the value's shape ("int 1..256", '`"HOST:PORT"`'); "" in untyped tables
    note: str = ""  # said after the default ("(2 GiB); `0` = no limit")


def key_doc(meaning: str, kind: str = "", note: str = "") -> Mapping[str, KeyDoc]:
    """The metadata that makes a dataclass field a routes-file key.

    >>> key_doc("where clients connect", '`"HOST:PORT"`')[KEY].kind
    '`"HOST:PORT"`'
    """
    return {KEY: KeyDoc(meaning, kind, note)}


def key_fields(cls: type) -> tuple[Field[Any], ...]:
    """The fields of a dataclass that are routes-file keys, in declaration order."""
    return tuple(f for f in fields(cls) if KEY in f.metadata)


def keys_of(cls: type) -> tuple[str, ...]:
    """The keys of the table a dataclass declares, in declaration order."""
    return tuple(f.name for f in key_fields(cls))


def show_default(f: Field[Any]) -> str:
    """The default of a key as the docs show it: TOML-like, ``required`` or ``none``.

    >>> from dataclasses import field, make_dataclass
    >>> C = make_dataclass("C", [("a", int, field(default=5)), ("b", str, field(default="x"))])
    >>> [show_default(f) for f in fields(C)]
    ['`5`', '`"x"`']
    """
    if f.default is MISSING and f.default_factory is MISSING:
        return "required"
    value = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[operator, misc]
    if value is None:
        return "none"
    if is_dataclass(value):  # a sub-table: its own keys have the defaults
        return ""
    return f"`{_toml(value)}`"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list, frozenset)):
        items = [_toml(v) for v in value][:2]
        return "[" + ", ".join(items + (["..."] if len(value) > 2 else [])) + "]"
    if isinstance(value, Mapping):
        return "{}" if not value else "{...}"
    return str(value)


def key_table(tables: Sequence[tuple[str, type]]) -> str:
    """The Markdown table of the keys of some dataclasses, as ``docs/config.md`` has it.

    Each entry is a table's path (``"proxy"``, ``"routes[].match"``, ``""`` for the top) and
    the dataclass declaring its keys. The table has a "type, default" column when any key
    states its kind.
    """
    rows = [(f"{path}.{f.name}" if path else f.name, f, f.metadata[KEY])
            for path, cls in tables for f in key_fields(cls)]
    typed = any(doc.kind for _, _, doc in rows)
    lines = (["| key | type, default | meaning |", "| --- | --- | --- |"] if typed
             else ["| key | meaning |", "| --- | --- |"])
    for name, f, doc in rows:
        if typed:
            # "; " after a kind that lists choices itself ("`a`, `b`; `a`")
            shape = ("; " if "," in doc.kind else ", ").join(
                p for p in (doc.kind, show_default(f)) if p)
            lines.append(f"| `{name}` | {shape}{doc.note} | {doc.meaning} |")
        else:
            lines.append(f"| `{name}` | {doc.meaning} |")
    return "\n".join(lines)


__all__ = ["KEY", "KeyDoc", "key_doc", "key_fields", "key_table", "keys_of", "show_default"]
