"""An independent static counter of Django models: the truth of the corpus benchmark.

It shares no code with ``analysis/`` on purpose (a bug there must not be copied here):
its own file walk, its own import resolution and its own idea of an app. It answers one
question per project: which concrete models (abstract ones left out, proxy models kept)
does the project's own source define, and in which Django app is each.

* a class is a model when one of its bases resolves (through the file's imports, package
  re-exports and star imports) to ``django.db.models.Model`` or to a project class that is a
  model, or is a known third-party model base (:data:`EXTERNAL_BASES`);
* classes count wherever Django would see them at import time: in the module body and in
  module-level ``if``/``try``/``with``/``else`` blocks, not inside functions;
* the app is Django's app label: ``Meta.app_label`` when set, else the ``AppConfig.label``
  of the app package (the nearest folder up with ``apps.py``, ``models.py`` or a ``models``
  package), else that package's name;
* tests, examples, test projects, sandboxes, docs and migrations are left out.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass
from pathlib import Path

SKIP_DIRS = re.compile(r"^(tests?|testing|testapps?|test_?utils|test_?project\w*|tests?_\w+|"
                       r"\w+_tests?|examples?|example_\w+|sandbox|docs?|migrations|fixtures|"
                       r"project_template|node_modules|build|dist|\..*|__pycache__|site-packages)$")
SKIP_FILES = re.compile(r"^(tests?|test_\w+|\w+_tests?|conftest)\.py$")
DJANGO_MODEL = {"django.db.models.Model", "django.db.models.base.Model"}
EXTERNAL_BASES = {"AbstractUser", "AbstractBaseUser", "MPTTModel", "MP_Node", "NS_Node",
                  "AL_Node", "PolymorphicModel", "AbstractBaseSession", "TimeStampedModel",
                  "OrderedModel", "ClusterableModel", "PolymorphicMPTTModel", "TranslatableModel",
                  "TranslatedFieldsModel"}


@dataclass
class _Class:
    module: str
    name: str
    bases: list[str]  # absolute dotted names where the imports tell, else as written
    meta: dict[str, str]
    attrs: dict[str, str]
    path: str


@dataclass(frozen=True)
class TrueModel:
    """A concrete model and its app label, as the counter sees it."""

    path: str  # relative to the project root
    name: str
    app: str
    proxy: bool


def _walk(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not SKIP_DIRS.match(d)]
        out += [Path(dirpath) / f for f in filenames
                if f.endswith(".py") and not SKIP_FILES.match(f)]
    return sorted(out)


def _module(root: Path, path: Path) -> tuple[str, bool]:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    # the module name as the project's packages see it: strip leading non-package folders
    while len(parts) > 1 and not (root.joinpath(*parts[:1]) / "__init__.py").exists():
        root, parts = root / parts[0], parts[1:]
    package = parts[-1] == "__init__"
    if package:
        parts = parts[:-1]
    return ".".join(parts), package


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _name(node.value)
        return f"{inner}.{node.attr}" if inner else None
    if isinstance(node, ast.Subscript):  # Generic[...]-style bases
        return _name(node.value)
    return None


def _consts(body: list[ast.stmt]) -> dict[str, str]:
    out = {}
    for s in body:
        if isinstance(s, ast.Assign) and len(s.targets) == 1 and isinstance(
                s.targets[0], ast.Name) and isinstance(s.value, ast.Constant):
            out[s.targets[0].id] = str(s.value.value)
    return out


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements Django runs at import: the body and module-level if/try/with blocks."""
    out: list[ast.stmt] = []
    for s in body:
        out.append(s)
        if isinstance(s, ast.If):
            out += _top_level(s.body) + _top_level(s.orelse)
        elif isinstance(s, ast.Try):
            out += _top_level(s.body) + _top_level(s.orelse) + _top_level(s.finalbody)
            for h in s.handlers:
                out += _top_level(h.body)
        elif isinstance(s, ast.With):
            out += _top_level(s.body)
    return out


_CLASS_LINE = re.compile(r"^class\s+(\w+)\s*(?:\[[^\]]*\])?\s*(\([^)]*\))?\s*:")
_IMPORT_LINE = re.compile(r"^(from\s+[\w.]+\s+import\s+[\w, ]+|import\s+[\w., ]+)\s*$")


def _class_skeleton(text: str) -> str:
    """Top-level imports and class headers of a file ``ast`` cannot read, as a file it can:
    each class keeps its bases and, when its body says ``abstract = True`` or
    ``proxy = True`` in a ``Meta``, that Meta (model fields are not needed to count)."""
    out: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if (m := _CLASS_LINE.match(line)) is not None:
            current = [f"class {m.group(1)}{m.group(2) or ''}:", "    class Meta:"]
            out += current[:1]
            out.append("    pass")
        elif _IMPORT_LINE.match(line):
            out.append(line.strip())
            current = None
        elif current is not None and re.match(r"^\s+(abstract|proxy)\s*=\s*True", line):
            flag = line.split("=")[0].strip()
            out += [current[1], f"        {flag} = True"]
        elif line and not line[0].isspace():
            current = None
    return "\n".join(out) + "\n"


class Counter:
    """Reads a project tree and answers which classes are concrete models."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.classes: dict[str, _Class] = {}
        self.imports: dict[str, dict[str, str]] = {}
        self.stars: dict[str, list[str]] = {}
        self.unreadable: list[str] = []
        for path in _walk(root):
            self._read(path)
        self._memo: dict[str, bool] = {}

    def _read(self, path: Path) -> None:
        module, package = _module(self.root, path)
        data = path.read_bytes()
        try:
            tree = ast.parse(data)
        except (SyntaxError, ValueError):
            # newer syntax than this interpreter: class lines are read as text instead
            self.unreadable.append(str(path.relative_to(self.root)))
            try:
                tree = ast.parse(_class_skeleton(data.decode("utf-8", "replace")))
            except SyntaxError:
                return
        names: dict[str, str] = {}
        stars: list[str] = []
        here = module.split(".") if package else module.split(".")[:-1]
        for s in _top_level(tree.body):
            if isinstance(s, ast.Import):
                for a in s.names:
                    names[a.asname or a.name.split(".")[0]] = a.name if a.asname else \
                        a.name.split(".")[0]
            elif isinstance(s, ast.ImportFrom):
                base = here[: len(here) - s.level + 1] if s.level else []
                src = ".".join([*base, *([s.module] if s.module else [])])
                for a in s.names:
                    if a.name == "*":
                        stars.append(src)
                    else:
                        names[a.asname or a.name] = f"{src}.{a.name}"
            elif isinstance(s, ast.ClassDef):
                meta: dict[str, str] = {}
                for b in s.body:
                    if isinstance(b, ast.ClassDef) and b.name == "Meta":
                        meta = _consts(b.body)
                bases = [n for b in s.bases if (n := _name(b))]
                self.classes[f"{module}.{s.name}"] = _Class(
                    module, s.name, bases, meta, _consts(s.body),
                    str(path.relative_to(self.root)))
        self.imports[module] = names
        self.stars[module] = stars

    def _absolute(self, module: str, written: str) -> str:
        head, _, rest = written.partition(".")
        if f"{module}.{head}" in self.classes:
            return f"{module}.{written}"
        target = self.imports.get(module, {}).get(head)
        if target is None:
            for star in self.stars.get(module, []):
                found = self._find(star, head, 0)
                if found:
                    return f"{found}.{rest}" if rest else found
            return written
        return f"{target}.{rest}" if rest else target

    def _find(self, module: str, name: str, depth: int) -> str | None:
        """Where ``module.name`` is defined (following re-exports and star imports)."""
        if depth > 8 or module not in self.imports:
            return None
        if f"{module}.{name}" in self.classes:
            return f"{module}.{name}"
        if name in self.imports[module]:
            target = self.imports[module][name]
            mod, _, last = target.rpartition(".")
            return self._find(mod, last, depth + 1) or target
        for star in self.stars.get(module, []):
            found = self._find(star, name, depth + 1)
            if found:
                return found
        return None

    def _resolve(self, dotted: str) -> str:
        if dotted in self.classes:
            return dotted
        mod, _, last = dotted.rpartition(".")
        return self._find(mod, last, 0) or dotted

    def is_model(self, qual: str, stack: tuple[str, ...] = ()) -> bool:
        if qual in self._memo:
            return self._memo[qual]
        c = self.classes[qual]
        result = False
        for written in c.bases:
            base = self._resolve(self._absolute(c.module, written))
            if base in self.classes and base not in stack and base != qual:
                result = self.is_model(base, (*stack, qual))
            else:
                result = base in DJANGO_MODEL or (
                    base.rsplit(".", 1)[-1] in EXTERNAL_BASES and not base.startswith(
                        "django.core"))
            if result:
                break
        self._memo[qual] = result
        return result

    def app_of(self, c: _Class) -> str:
        if "app_label" in c.meta:
            return c.meta["app_label"]
        folder = (self.root / c.path).parent
        while folder != self.root:
            is_models_pkg = folder.name == "models" and (folder / "__init__.py").exists()
            if not is_models_pkg and any((folder / n).exists() for n in
                                         ("apps.py", "models.py", "models")):
                break
            folder = folder.parent
        label = self._app_config_label(folder)
        return label or folder.name

    def _app_config_label(self, folder: Path) -> str | None:
        rel = str(folder.relative_to(self.root)) if folder != self.root else ""
        for c in self.classes.values():
            if str(Path(c.path).parent) == rel and Path(c.path).name in ("apps.py",
                                                                         "__init__.py") \
                    and any(b.endswith("AppConfig") for b in c.bases) and "label" in c.attrs:
                return c.attrs["label"]
        return None

    def models(self) -> list[TrueModel]:
        out = []
        for qual, c in sorted(self.classes.items()):
            if self.is_model(qual) and c.meta.get("abstract") != "True":
                out.append(TrueModel(c.path, c.name, self.app_of(c),
                                     c.meta.get("proxy") == "True"))
        return out


def count_models(root: Path) -> list[TrueModel]:
    """Concrete models of the project at ``root`` (tests and examples left out)."""
    return Counter(root).models()
