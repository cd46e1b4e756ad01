"""Pass 2: read every file into :class:`FileFacts`, reusing the cache where unchanged.

Most of a large tree is plain code that names no model, runs no SQL and declares no URL
(helpers, utilities). Such a file is read for its imports alone (a regular expression and
a parse of each import statement, :func:`analysis.python_facts.import_facts`), which is
what the import graph needs. A file is parsed in full when its text has anything else the
passes use (``needs_full_parse``), or when it imports a project module that is parsed in
full (so a helper that builds a model, or calls code that does, is not missed); the
second rule is applied until nothing changes. Full parses run in worker processes when
there are many.

The cache maps ``(relative path, size, mtime)`` and, failing that, a content hash to the
facts, so a second run over an unchanged tree never opens a file. Files that fail to
parse (syntax errors, other Python versions, undecodable bytes) are skipped and listed;
a file read for its imports alone is not parsed, so its syntax is not checked.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from functools import cache
from pathlib import Path

from analysis.cache import FactsCache
from analysis.facts import FileFacts
from analysis.python_facts import import_facts, needs_full_parse, python_facts
from analysis.state import Analysis

APP_MARKERS = ("__init__.py", "models.py", "apps.py", "models/__init__.py")


@cache
def _package_of(directory: Path) -> str | None:
    """Dotted package name of a directory, or None when it is not a package.

    A folder without ``__init__.py`` is still a package (an implicit namespace package)
    when it holds a Django app's ``models.py`` or ``apps.py``: Django imports it so.
    """
    if directory.parent == directory or not any(
            (directory / marker).exists() for marker in APP_MARKERS):
        return None
    parent = _package_of(directory.parent)
    return f"{parent}.{directory.name}" if parent else directory.name


def module_name(path: Path) -> tuple[str, bool]:
    """Dotted module name of a file, walking up while directories are packages."""
    is_package = path.name == "__init__.py"
    package = _package_of(path.parent)
    if is_package:
        return package or path.parent.name, True
    return f"{package}.{path.stem}" if package else path.stem, False


PARALLEL_FROM = 4_000_000  # bytes to parse in full before worker processes pay for
# themselves (CPython parses about 2 MB/s here; starting a pool costs about half a second)
CHUNK = 64

_Job = tuple[str, str, str, bool]  # path, relative path, module, is package


def parse_files(a: Analysis) -> Analysis:
    """Facts for every collected file; unparsable files go to ``skipped`` with the reason.

    Files parsed in full are parsed in worker processes when there are many of them
    (CPython's parser is the cost, one core per process).
    """
    cache = FactsCache.open(a.options)
    found: dict[str, FileFacts] = {}
    todo: dict[str, tuple[_Job, tuple[int, int]]] = {}
    todo_if_needed: dict[str, tuple[_Job, tuple[int, int]]] = {}
    from_cache: set[str] = set()
    for path in a.files:
        rel = str(path.relative_to(a.options.root))
        stat = path.stat()
        module, is_package = module_name(path)
        job: _Job = (str(path), rel, module, is_package)
        fact = cache.by_stat(rel, stat.st_size, stat.st_mtime_ns)
        if fact is None or fact.path != rel or fact.module != module:
            data = path.read_bytes()
            if needs_full_parse(data):
                todo[rel] = (job, (stat.st_size, stat.st_mtime_ns))
                continue
            fact = import_facts(data, module, is_package, rel)
            cache.store_stat(rel, stat.st_size, stat.st_mtime_ns, fact)
        else:
            from_cache.add(rel)
        found[rel] = fact
        if fact.imports_only:
            todo_if_needed[rel] = (job, (stat.st_size, stat.st_mtime_ns))
    _promote(found, todo, todo_if_needed)
    hits = len(from_cache & set(found))
    for (_, rel, _, _), (size, mtime), (key, fact) in _parse_all(list(todo.values()), cache, a):
        cache.store_stat(rel, size, mtime, fact)
        cache.store_content(key, fact)
        found[rel] = fact
    _package_of.cache_clear()  # a later run may have added or removed __init__.py files
    cache.prune()
    ordered = [found[str(p.relative_to(a.options.root))] for p in a.files]
    skipped = list(a.skipped) + [(f.path, f.error) for f in ordered if f.error]
    return replace(a, facts=tuple(f for f in ordered if not f.error), skipped=tuple(skipped),
                   cached_files=hits, cache=cache)


def _promote(found: dict[str, FileFacts], todo: dict[str, tuple[_Job, tuple[int, int]]],
             candidates: dict[str, tuple[_Job, tuple[int, int]]]) -> None:
    """Move files read for imports only to ``todo`` while they import a module parsed in
    full (a project module found by its full name or a dotted suffix)."""
    full = _suffixes([job[2] for job, _ in todo.values()]
                     + [f.module for f in found.values() if not f.imports_only])
    while True:
        promoted = [rel for rel in candidates if _imports_any(found[rel], full)]
        if not promoted:
            return
        for rel in promoted:
            todo[rel] = candidates.pop(rel)
            full |= _suffixes([found.pop(rel).module])


def _suffixes(modules: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for module in modules:
        parts = module.split(".")
        out.update(".".join(parts[i:]) for i in range(len(parts)))
    return out


def _imports_any(fact: FileFacts, modules: set[str]) -> bool:
    for name, _ in fact.imported:
        parts = name.split(".")
        if any(".".join(parts[:i]) in modules for i in range(1, len(parts) + 1)):
            return True
    return False


def _parse_all(todo: list[tuple[_Job, tuple[int, int]]], cache: FactsCache, a: Analysis
               ) -> Iterator[tuple[_Job, tuple[int, int], tuple[str, FileFacts]]]:
    jobs = [job for job, _ in todo]
    total = len(jobs)
    size = sum(stat[0] for _, stat in todo)
    if size >= PARALLEL_FROM and (os.cpu_count() or 1) > 1:
        ctx = multiprocessing.get_context("forkserver")
        with _importable_main(), ProcessPoolExecutor(max_workers=min(os.cpu_count() or 2, 4),
                                                     mp_context=ctx) as ex:
            chunks = [jobs[i:i + CHUNK] for i in range(0, total, CHUNK)]
            done = 0
            for chunk, results in zip(chunks, ex.map(_parse_chunk, chunks), strict=True):
                for job, result in zip(chunk, results, strict=True):
                    yield job, todo[done][1], result
                    done += 1
                a.options.progress("parse", done, total)
        return
    for i, (job, stat) in enumerate(todo):
        yield job, stat, _parse_one(job, cache)
        if i % 200 == 0 or i == total - 1:
            a.options.progress("parse", i + 1, total)


@contextmanager
def _importable_main() -> Iterator[None]:
    """Keep the caller's main script out of the workers while they start.

    forkserver and spawn workers re-run the parent's ``__main__`` (by path, or by module
    name under ``-m``): that fails for ``python -`` or a notebook, and re-runs a script
    that calls the analysis without an ``if __name__ == "__main__"`` guard. The workers
    need only this module, so the main module's file and spec are hidden meanwhile.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {k: main.__dict__.pop(k) for k in ("__file__",) if k in main.__dict__}
    spec = getattr(main, "__spec__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.update(saved)
        main.__spec__ = spec


def _parse_chunk(jobs: list[_Job]) -> list[tuple[str, FileFacts]]:
    return [_parse_one(job, None) for job in jobs]


def _parse_one(job: _Job, cache: FactsCache | None) -> tuple[str, FileFacts]:
    path, rel, module, is_package = job
    data = Path(path).read_bytes()
    key = hashlib.blake2b(data + module.encode(), digest_size=16).hexdigest()
    cached = cache.by_content(key) if cache is not None else None
    if cached is not None:
        return key, replace(cached, path=rel)
    return key, python_facts(data, module, is_package, rel)
