"""On-disk cache of per-file facts and parsed SQL shapes (pickle, written atomically).

It lives in ``<out>/.strangler-cache/`` unless ``Options.cache_dir`` says otherwise. The
version string changes whenever the facts' shape does, which drops old caches. A cache
that cannot be read is ignored (and rewritten), never an error.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.facts import FileFacts, TableAccess
from analysis.state import Options

VERSION = "facts-v4"


def code_version(*names: str) -> str:
    """Digest of the analysis's own source files: a changed extractor drops old caches."""
    here = Path(__file__).parent
    h = hashlib.blake2b(digest_size=8)
    for name in names or tuple(sorted(p.name for p in here.glob("*.py"))):
        h.update((here / name).read_bytes())
    return h.hexdigest()


@dataclass
class FactsCache:
    """Facts by file stat and by content hash; SQL access by statement fingerprint."""

    path: Path | None
    stat: dict[tuple[str, int, int], FileFacts] = field(default_factory=dict)
    content: dict[str, FileFacts] = field(default_factory=dict)
    sql: dict[str, TableAccess] = field(default_factory=dict)
    dirty: bool = False
    seen: set[tuple[str, int, int]] = field(default_factory=set)

    @classmethod
    def open(cls, options: Options) -> FactsCache:
        """Load the cache for these options (an empty one if absent or unreadable)."""
        directory = options.cache_dir or options.out / ".strangler-cache"
        version = code_version("python_facts.py", "facts.py", "extract_tables.py")
        path = directory / f"{VERSION}-{version}.pickle"
        try:
            with path.open("rb") as fh:
                data: dict[str, Any] = pickle.load(fh)  # noqa: S301 - our own cache file
            return cls(path, data["stat"], data["content"], data.get("sql", {}))
        except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError,
                AttributeError, ValueError):
            return cls(path)

    def by_stat(self, rel: str, size: int, mtime: int) -> FileFacts | None:
        self.seen.add((rel, size, mtime))
        return self.stat.get((rel, size, mtime))

    def store_stat(self, rel: str, size: int, mtime: int, fact: FileFacts) -> None:
        self.stat[(rel, size, mtime)] = fact
        self.dirty = True

    def prune(self) -> None:
        """Forget files not seen in this run (and content no file has any more)."""
        if len(self.stat) == len(self.seen):
            return
        self.stat = {k: v for k, v in self.stat.items() if k in self.seen}
        self.dirty = True

    def by_content(self, key: str) -> FileFacts | None:
        return self.content.get(key)

    def store_content(self, key: str, fact: FileFacts) -> None:
        self.content[key] = fact
        self.dirty = True

    def save(self) -> None:
        """Write the cache atomically; a read-only location is silently left alone."""
        if not self.dirty or self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            data = {"stat": self.stat, "content": self.content, "sql": self.sql}
            write_atomic(self.path, pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
            self.dirty = False
        except OSError:
            return


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
