"""A small YAML writer for the Envoy and Istio exports: mappings, lists, scalars, text blocks.

Strings are always double-quoted (JSON escapes, which YAML reads the same way), so no value
is ever read back as a number, a boolean or null; multi-line strings become ``|`` blocks.

>>> print(dump({"a": [1, {"b": "x"}], "c": True}), end="")
a:
  - 1
  - b: "x"
c: true
"""

from __future__ import annotations

import json
from typing import Any


def dump(value: Any) -> str:
    """``value`` (dicts, lists, str, int, float, bool, None) as a YAML document."""
    return "\n".join(_lines(value, 0)) + "\n"


def dump_all(documents: list[Any]) -> str:
    """Several documents separated by ``---``."""
    return "---\n".join(dump(d) for d in documents)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(str(value))


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return [pad + "{}"]
        out: list[str] = []
        for key, item in value.items():
            out += _entry(f"{pad}{_key(key)}:", item, indent)
        return out
    if isinstance(value, list):
        if not value:
            return [pad + "[]"]
        out = []
        for item in value:
            nested = _lines(item, indent + 2)
            if isinstance(item, dict | list) and item:
                out.append(f"{pad}- {nested[0].lstrip()}")
                out += nested[1:]
            else:
                out += _entry(f"{pad}-", item, indent)
        return out
    return [pad + _scalar(value)]


def _entry(head: str, item: Any, indent: int) -> list[str]:
    if isinstance(item, str) and "\n" in item:
        body = item.rstrip("\n").split("\n")
        return [f"{head} |", *(" " * (indent + 2) + line if line else "" for line in body)]
    if isinstance(item, dict | list) and item:
        return [head, *_lines(item, indent + 2)]
    return [f"{head} {_lines(item, 0)[0]}"]


def _key(key: Any) -> str:
    text = str(key)
    plain = text.replace("_", "").replace("-", "").replace(".", "").isalnum()
    return text if plain and not text[0].isdigit() else json.dumps(text)


__all__ = ["dump", "dump_all"]
