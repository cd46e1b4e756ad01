"""Pass 2: parse every file into :class:`FileFacts`, reusing the cache where unchanged.

The cache maps ``(relative path, size, mtime)`` and, failing that, a content hash to the
facts, so a second run over an unchanged tree never opens a file. Files that fail to
parse (syntax errors, other Python versions, undecodable bytes) are skipped and listed.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from functools import cache
from pathlib import Path

from analysis.cache import FactsCache
from analysis.facts import FileFacts
from analysis.python_facts import python_facts
from analysis.state import Analysis


@cache
def _package_of(directory: Path) -> str | None:
    """Dotted package name of a directory, or None when it is not a package."""
    if directory.parent == directory or not (directory / "__init__.py").exists():
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


PARALLEL_FROM = 400  # files to parse before worker processes pay for themselves
CHUNK = 64

_Job = tuple[str, str, str, bool]  # path, relative path, module, is package


def parse_files(a: Analysis) -> Analysis:
    """Facts for every collected file; unparsable files go to ``skipped`` with the reason.

    Files not in the cache are parsed in worker processes when there are many of them
    (CPython's parser is the cost, one core per process).
    """
    cache = FactsCache.open(a.options)
    found: dict[str, FileFacts] = {}
    todo: list[tuple[_Job, tuple[int, int]]] = []
    for path in a.files:
        rel = str(path.relative_to(a.options.root))
        stat = path.stat()
        module, is_package = module_name(path)
        fact = cache.by_stat(rel, stat.st_size, stat.st_mtime_ns)
        if fact is None or fact.path != rel or fact.module != module:
            todo.append(((str(path), rel, module, is_package), (stat.st_size, stat.st_mtime_ns)))
        else:
            found[rel] = fact
    hits = len(found)
    for (_, rel, _, _), (size, mtime), (key, fact) in _parse_all(todo, cache, a):
        cache.store_stat(rel, size, mtime, fact)
        cache.store_content(key, fact)
        found[rel] = fact
    _package_of.cache_clear()  # a later run may have added or removed __init__.py files
    cache.prune()
    ordered = [found[str(p.relative_to(a.options.root))] for p in a.files]
    skipped = list(a.skipped) + [(f.path, f.error) for f in ordered if f.error]
    return replace(a, facts=tuple(f for f in ordered if not f.error), skipped=tuple(skipped),
                   cached_files=hits, cache=cache)


def _parse_all(todo: list[tuple[_Job, tuple[int, int]]], cache: FactsCache, a: Analysis
               ) -> Iterator[tuple[_Job, tuple[int, int], tuple[str, FileFacts]]]:
    jobs = [job for job, _ in todo]
    total = len(jobs)
    if total >= PARALLEL_FROM and (os.cpu_count() or 1) > 1:
        ctx = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(max_workers=min(os.cpu_count() or 2, 4), mp_context=ctx) as ex:
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
