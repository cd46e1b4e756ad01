"""Pass 2: parse every file into :class:`FileFacts`, reusing the cache where unchanged.

The cache maps ``(relative path, size, mtime)`` and, failing that, a content hash to the
facts, so a second run over an unchanged tree never opens a file. Files that fail to
parse (syntax errors, other Python versions, undecodable bytes) are skipped and listed.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

from analysis.cache import FactsCache
from analysis.facts import FileFacts
from analysis.python_facts import python_facts
from analysis.state import Analysis


def module_name(path: Path) -> tuple[str, bool]:
    """Dotted module name of a file, walking up while directories are packages."""
    is_package = path.name == "__init__.py"
    parts = [] if is_package else [path.stem]
    directory = path.parent
    while (directory / "__init__.py").exists() and directory.parent != directory:
        parts.append(directory.name)
        directory = directory.parent
    return ".".join(reversed(parts)) or path.stem, is_package


def parse_files(a: Analysis) -> Analysis:
    """Facts for every collected file; unparsable files go to ``skipped`` with the reason."""
    cache = FactsCache.open(a.options)
    facts: list[FileFacts] = []
    skipped = list(a.skipped)
    hits = 0
    total = len(a.files)
    for i, path in enumerate(a.files):
        rel = str(path.relative_to(a.options.root))
        stat = path.stat()
        fact = cache.by_stat(rel, stat.st_size, stat.st_mtime_ns)
        if fact is None or fact.path != rel:
            fact = _parse_one(path, rel, cache)
            cache.store_stat(rel, stat.st_size, stat.st_mtime_ns, fact)
        else:
            hits += 1
        if fact.error:
            skipped.append((rel, fact.error))
        else:
            facts.append(fact)
        if i % 200 == 0 or i == total - 1:
            a.options.progress("parse", i + 1, total)
    cache.prune()
    return replace(a, facts=tuple(facts), skipped=tuple(skipped), cached_files=hits,
                   cache=cache)


def _parse_one(path: Path, rel: str, cache: FactsCache) -> FileFacts:
    data = path.read_bytes()
    module, is_package = module_name(path)
    key = hashlib.blake2b(data + module.encode(), digest_size=16).hexdigest()
    cached = cache.by_content(key)
    if cached is not None:
        return replace(cached, path=rel)
    fact = python_facts(data, module, is_package, rel)
    cache.store_content(key, fact)
    return fact
