"""Write a file so that readers see the old content or the new, never half of either.

The proxy's one way to replace a file (the routes file on ``strangler routes set``, worker
metrics snapshots, exported regression tests; the demo's routes file too): a temporary file in
the same directory, then ``os.replace``, which is atomic on POSIX within one file system. An
existing file keeps its permission bits. Other top-level packages may not import the proxy
and keep their own (``analysis.cache.write_atomic``, ``extracted.sync.relay``,
``legacy_monolith.schema``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` via a temp file in the same directory and ``os.replace``.

    Raises OSError as writing does; the temp file is gone then.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


__all__ = ["write_atomic"]
