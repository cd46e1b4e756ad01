"""Name resolution across the project's modules, without importing anything.

Projects import their own modules both as ``store.models`` and ``shop.store.models``
(depending on ``sys.path``); a module is found by its full dotted name or by a unique
dotted suffix. Names re-exported from packages (``from .product import Product`` in
``models/__init__.py``) are followed a few steps, and so are star imports
(``from .models import *``), limited to ``__all__`` where the module declares one.
"""

from __future__ import annotations

from collections import defaultdict

from analysis.facts import ClassFact, FileFacts


class Resolver:
    """Resolves dotted names seen in a module to project qualified names."""

    def __init__(self, facts: tuple[FileFacts, ...]) -> None:
        self.modules: dict[str, FileFacts] = {f.module: f for f in facts}
        self.bindings: dict[str, dict[str, str]] = {f.module: dict(f.bindings) for f in facts}
        self.stars: dict[str, tuple[str, ...]] = {f.module: f.stars for f in facts if f.stars}
        self.exports: dict[str, frozenset[str]] = {
            f.module: frozenset(f.exports) for f in facts if f.exports is not None}
        self.classes: dict[str, ClassFact] = {}
        self.class_module: dict[str, str] = {}
        self.defs: set[str] = set()
        suffixes: dict[str, set[str]] = defaultdict(set)
        for f in facts:
            parts = f.module.split(".")
            for i in range(len(parts)):
                suffixes[".".join(parts[i:])].add(f.module)
            for c in f.classes:
                self.classes[f"{f.module}.{c.name}"] = c
                self.class_module[f"{f.module}.{c.name}"] = f.module
            for u in f.units:
                self.defs.add(f"{f.module}.{u.name}")
        self.suffixes = {k: min(v, key=len) for k, v in suffixes.items()}
        self._memo: dict[tuple[str, str], str | None] = {}

    def module(self, dotted: str) -> str | None:
        """The project module called ``dotted`` (exactly, or by a dotted suffix).

        A one-word name matches by suffix only a module near the top (an app imported
        without its project folder: ``store`` for ``shop.store``), so that ``import copy``
        is the standard library, not a project's ``management/commands/copy.py``.
        """
        if dotted in self.modules:
            return dotted
        found = self.suffixes.get(dotted)
        if found is None or "." in dotted or found.count(".") <= 1:
            return found
        return None

    def resolve(self, module: str, dotted: str) -> str | None:
        """Qualified name that ``dotted``, as written in ``module``, refers to."""
        key = (module, dotted)
        if key not in self._memo:
            self._memo[key] = self._resolve(module, dotted)
        return self._memo[key]

    def _resolve(self, module: str, dotted: str) -> str | None:
        head, _, rest = dotted.partition(".")
        local = f"{module}.{head}"
        if local in self.classes or local in self.defs:
            return f"{local}.{rest}" if rest else local
        target = self.bindings.get(module, {}).get(head)
        if target is None:
            target = self._from_star(module, head, 0)
            if target is None:
                return None
        return self.canonical(f"{target}.{rest}" if rest else target)

    def _from_star(self, module: str, name: str, depth: int) -> str | None:
        """Where ``name`` comes from when ``module`` star-imports it.

        A module that defines the name wins over one that only imports it (star-imported
        siblings often import each other's models back through the package, which would
        lead in a circle); ``__all__`` limits what a star import brings.
        """
        if depth > 4:
            return None
        stars = [mod for star in self.stars.get(module, ()) if (mod := self.module(star))
                 and (mod not in self.exports or name in self.exports[mod])]
        for mod in stars:
            if f"{mod}.{name}" in self.classes or f"{mod}.{name}" in self.defs:
                return f"{mod}.{name}"
        if name.startswith("_"):
            return None
        for mod in stars:
            target = self.bindings.get(mod, {}).get(name)
            if target is not None and target != f"{module}.{name}":
                return target
        for mod in stars:
            found = self._from_star(mod, name, depth + 1)
            if found is not None:
                return found
        return None

    def canonical(self, name: str, depth: int = 0) -> str:
        """Follow module suffixes and package re-exports to where ``name`` is defined."""
        if name in self.classes or name in self.defs or depth > 6:
            return name
        parts = name.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            mod = self.module(".".join(parts[:cut]))
            if mod is None:
                continue
            head, rest = parts[cut], parts[cut + 1:]
            if f"{mod}.{head}" in self.classes or f"{mod}.{head}" in self.defs:
                return ".".join([mod, head, *rest])
            sub = self.module(f"{mod}.{head}")
            if sub is not None:
                return self.canonical(".".join([sub, *rest]), depth + 1) if rest else sub
            target = self.bindings.get(mod, {}).get(head) or self._from_star(mod, head, 0)
            if target is not None and target != name:
                return self.canonical(".".join([target, *rest]), depth + 1)
            return ".".join([mod, head, *rest])
        return name
