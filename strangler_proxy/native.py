"""The proxy's per-request code, compiled with mypyc where it can be; pure Python otherwise.

The modules in :data:`MODULES` are what every request runs through (the two parsers' callbacks,
routing, the forwarded head, metrics). `make install` compiles them with mypyc (which ships
with mypy, in the dev lock) into C extensions beside their sources: about 45 % fewer
instructions per request (``bench.proxy.hotpath`` under callgrind), the same code, the same
tests. Python prefers an extension module to a ``.py`` of the same name, so the build also
writes :data:`MANIFEST`, a digest of the sources it compiled; :func:`activate` (run when
``strangler_proxy`` is imported) loads the compiled modules only while that digest matches
the sources. An edited source, a missing build, another Python, or ``STRANGLER_PURE_PYTHON=1``
means the pure-Python modules, all of them (compiled modules call each other directly, so a
mix would run stale code). ``strangler proxy`` says in its first log line which it runs.

    python -m strangler_proxy.native_build build [--if-stale]   # what `make install` runs
    python -m strangler_proxy.native_build status [--json]
    python -m strangler_proxy.native_build clean
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent
MODULES = (
    "strangler_proxy.edge.forward",
    "strangler_proxy.edge.server",
    "strangler_proxy.edge.upstream",
    "strangler_proxy.edge.limits",
    "strangler_proxy.routing",
    "strangler_proxy.match",
    "strangler_proxy.headers",
    "strangler_proxy.metrics",
    "strangler_proxy.shadow.copies",  # the shadow copy path's admit and copy (CopyBuffer)
)
GROUP = "strangler_proxy._native"  # mypyc's shared library: strangler_proxy/_native__mypyc*.so
MANIFEST = PACKAGE / "_native.json"
PURE_ENV = "STRANGLER_PURE_PYTHON"

# Which modules run, and why; set by activate().
mode = "pure"
reason = "not activated"


def source_path(module: str) -> Path:
    return ROOT / (module.replace(".", "/") + ".py")


def digest() -> str:
    """SHA-256 over the compiled modules' sources and the Python they are built for."""
    h = hashlib.sha256(sys.implementation.cache_tag.encode())
    for module in MODULES:
        h.update(module.encode() + b"\0" + source_path(module).read_bytes() + b"\0")
    return h.hexdigest()


def extensions() -> list[Path]:
    """The compiled files present (for any Python version)."""
    names = [*MODULES, f"{GROUP}__mypyc"]
    found: list[Path] = []
    for name in names:
        base = ROOT / name.replace(".", "/")
        found += sorted(base.parent.glob(base.name + ".*.so"))
    return found


def check() -> tuple[str, str]:
    """``("compiled", ...)`` when the built extensions match the sources, else why not."""
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        return "pure", f"{PURE_ENV} is set"
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    missing = [m for m in MODULES if not source_path(m).with_suffix(suffix).exists()]
    if missing or not MANIFEST.exists():
        return "pure", "not compiled (make install compiles it with mypyc)"
    try:
        built = json.loads(MANIFEST.read_text()).get("digest")
    except (OSError, ValueError):
        return "pure", f"{MANIFEST.name} is unreadable (rebuild: make install)"
    if built != digest():
        return "pure", "the sources changed since they were compiled (rebuild: make install)"
    return "compiled", f"mypyc, {len(MODULES)} modules"


class _SourceOnly(importlib.abc.MetaPathFinder):
    """Loads :data:`MODULES` from their ``.py`` even where a compiled file sits beside them."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, source_path(fullname))


def activate() -> None:
    """Decide once per process, before any of :data:`MODULES` is imported."""
    global mode, reason  # noqa: PLW0603 - one decision per process, read by the proxy's log
    if any(m in sys.modules for m in MODULES):
        return  # already imported: whatever was loaded stays
    mode, reason = check()
    if mode != "compiled" and not any(isinstance(f, _SourceOnly) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceOnly())


def describe() -> str:
    """One line for the proxy's start-up log."""
    return f"hot path: {'compiled' if mode == 'compiled' else 'pure Python'}, {reason}"


activate()  # on import, which strangler_proxy/__init__.py does first
