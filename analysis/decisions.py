"""A person's decisions about the contexts, applied around the proposal.

From the command line, ``--pin MODEL=CONTEXT`` (repeatable); from a contexts file
(``--contexts-file decisions.toml``)::

    [pins]                      # model -> context: these models go there, together
    "store.Product" = "catalog"
    "store.Brand" = "catalog"

    [merge]                     # new name -> proposed contexts to merge into it
    ordering = ["order", "cart"]

    [names]                     # proposed name -> the name people use
    order_line = "fulfilment"

The proposal is computed as usual, then: pinned models move to the proposed context of
that name, or to a new context of that name, listed contexts merge, names change.
Everything after (metrics, plan, routes draft, contracts) is computed on the result, so the
report shows what the decisions cost. Unpinned models stay where the data put them.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from analysis.errors import BadOption

KEYS = ("pins", "merge", "names")


@dataclass(frozen=True)
class Decisions:
    """Pins, merges and names, each keyed as the person wrote them."""

    pins: tuple[tuple[str, str], ...] = ()
    merge: tuple[tuple[str, tuple[str, ...]], ...] = ()
    names: tuple[tuple[str, str], ...] = field(default=())

    def __bool__(self) -> bool:
        return bool(self.pins or self.merge or self.names)


def parse_pin(text: str) -> tuple[str, str]:
    """``"store.Product=catalog"`` -> ``("store.Product", "catalog")``.

    >>> parse_pin("store.Product=catalog")
    ('store.Product', 'catalog')
    """
    model, sep, context = text.partition("=")
    if not sep or not model.strip() or not context.strip() or "." not in model:
        raise BadOption(f"--pin {text!r}: expected MODEL=CONTEXT, e.g. store.Product=catalog")
    return model.strip(), context.strip()


def read_decisions(path: Path, pins: tuple[str, ...] = ()) -> Decisions:
    """The decisions of a contexts file (if any) plus ``--pin`` values (which win)."""
    data: dict[str, object] = {}
    if path.name:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise BadOption(f"--contexts-file {path}: cannot read it ({exc}); pass a TOML "
                            f"file with [pins], [merge] and [names]") from None
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise BadOption(f"--contexts-file {path}: unknown section [{unknown[0]}]; use "
                        f"{', '.join(f'[{k}]' for k in KEYS)}")
    file_pins = {k: str(v) for k, v in _table(data, "pins", path).items()}
    merge = {k: tuple(str(x) for x in v) for k, v in _table(data, "merge", path, True).items()
             if isinstance(v, list)}
    names = {k: str(v) for k, v in _table(data, "names", path).items()}
    all_pins = {**file_pins, **dict(parse_pin(p) for p in pins)}
    return Decisions(pins=tuple(sorted(all_pins.items())), merge=tuple(sorted(merge.items())),
                     names=tuple(sorted(names.items())))


def _table(data: dict[str, object], key: str, path: Path, list_values: bool = False
           ) -> dict[str, object]:
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise BadOption(f"--contexts-file {path}: [{key}] must be a table")
    for k, v in table.items():
        ok = (isinstance(v, list) and all(isinstance(x, str) for x in v)) if list_values \
            else isinstance(v, str)
        if not ok:
            kind = "a list of context names" if list_values else "a string"
            raise BadOption(f"--contexts-file {path}: [{key}] {k} = {v!r}: must be {kind}")
    return dict(table)


def check_models(decisions: Decisions, models: set[str]) -> None:
    """Every pinned model exists; the error names the closest ones."""
    for model, _ in decisions.pins:
        if model not in models:
            close = difflib.get_close_matches(model, sorted(models), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise BadOption(f"--pin {model}: no such model in the analysis{hint}")


def apply_pins(part: dict[str, int], names: dict[int, str],
               pins: tuple[tuple[str, str], ...]) -> tuple[dict[str, int], dict[int, str]]:
    """Move pinned models into the proposed context of that name, or into a new context of
    that name. Returns the partition and the names the pins fixed.

    >>> apply_pins({"a": 0, "b": 1, "c": 1}, {0: "x", 1: "y"}, (("b", "x"), ("c", "z")))
    ({'a': 0, 'b': 0, 'c': 2}, {0: 'x', 2: 'z'})
    """
    out = dict(part)
    ids = {n: c for c, n in names.items()}
    forced: dict[int, str] = {}
    free = max(part.values(), default=-1) + 1
    for model, name in pins:
        if name not in ids:
            ids[name], free = free, free + 1
        out[model] = ids[name]
        forced[ids[name]] = name
    return out, forced


def apply_merges(part: dict[str, int], names: dict[int, str],
                 merge: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[dict[str, int],
                                                                          dict[int, str],
                                                                          list[str]]:
    """Merge contexts by their proposed names; unknown names come back as warnings."""
    by_name = {n: c for c, n in names.items()}
    forced: dict[int, str] = {}
    warnings = []
    out = dict(part)
    for new, olds in merge:
        ids = [by_name[o] for o in olds if o in by_name]
        warnings += [f"--contexts-file merge {new}: no proposed context is called {o!r}"
                     for o in olds if o not in by_name]
        if not ids:
            continue
        keep = min(ids)
        out = {m: keep if c in ids else c for m, c in out.items()}
        forced[keep] = new
    return out, forced, warnings
