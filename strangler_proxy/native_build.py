"""Builds the compiled hot path that :mod:`strangler_proxy.native` loads (see its docstring).

    python -m strangler_proxy.native_build build [--if-stale]   # what `make install` runs
    python -m strangler_proxy.native_build status [--json]
    python -m strangler_proxy.native_build clean
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from strangler_proxy.native import (
    GROUP,
    MANIFEST,
    MODULES,
    ROOT,
    check,
    digest,
    extensions,
    source_path,
)
from strangler_proxy.write_atomic import write_atomic


def _say(text: str, err: bool = False) -> None:
    (sys.stderr if err else sys.stdout).write(text + "\n")


# -- build -------------------------------------------------------------------------------


def clean() -> list[Path]:
    removed = extensions()
    for path in removed:
        path.unlink()
    MANIFEST.unlink(missing_ok=True)
    return removed


def build(if_stale: bool = False) -> int:
    """Compile :data:`MODULES`; 0 also when it cannot (no mypyc or C compiler): pure runs."""
    if if_stale and check()[0] == "compiled":
        _say("hot path: compiled and up to date")
        return 0
    try:
        from mypyc.build import mypycify  # noqa: PLC0415 - only the build needs it
        from setuptools import Distribution  # noqa: PLC0415
    except ImportError as exc:
        _say(f"warning: not compiling the proxy's hot path ({exc.name} is not installed); "
              "it runs as pure Python, about 40 % slower per request", err=True)
        return 0
    compiler = os.environ.get("CC", "cc").split()[0]
    if shutil.which(compiler) is None and shutil.which("gcc") is None:
        _say(f"warning: not compiling the proxy's hot path (no C compiler: {compiler!r} not "
              "found; apt-get install gcc); it runs as pure Python", err=True)
        return 0
    clean()
    wanted = digest()  # of the sources as compiled, taken before the build
    cwd = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="strangler-native-") as tmp:
        os.chdir(ROOT)  # mypycify and build_ext --inplace work from the package root
        try:
            ext = mypycify([str(source_path(m).relative_to(ROOT)) for m in MODULES],
                           opt_level="3", group_name=GROUP, target_dir=str(Path(tmp) / "c"),
                           verbose=False)
            dist = Distribution({"name": "strangler-native", "ext_modules": ext,
                                 "script_name": "native", "script_args": [
                                     "-q", "build_ext", "--inplace",
                                     "--build-temp", str(Path(tmp) / "obj")]})
            dist.parse_command_line()
            dist.run_commands()
        except (SystemExit, Exception) as exc:  # noqa: BLE001 - any failure: say so, run pure
            clean()
            _say(f"warning: compiling the proxy's hot path failed ({exc}); it runs as pure "
                  "Python", err=True)
            return 0
        finally:
            os.chdir(cwd)
    write_atomic(MANIFEST, json.dumps({"digest": wanted, "modules": list(MODULES),
                                       "python": sys.implementation.cache_tag}, indent=1) + "\n")
    _say(f"hot path: compiled {len(MODULES)} modules with mypyc")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m strangler_proxy.native_build",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="compile the hot path (pure Python stays if it cannot)")
    b.add_argument("--if-stale", action="store_true", help="only when the sources changed")
    s = sub.add_parser("status", help="compiled or pure, and why")
    s.add_argument("--json", action="store_true")
    sub.add_parser("clean", help="remove the compiled files (pure Python from then on)")
    args = parser.parse_args(argv)
    if args.command == "build":
        return build(args.if_stale)
    if args.command == "clean":
        _say(f"removed {len(clean())} compiled files")
        return 0
    state, why = check()
    if args.json:
        _say(json.dumps({"mode": state, "reason": why, "modules": list(MODULES)}))
    else:
        _say(f"hot path: {state} ({why})")
    return 0




if __name__ == "__main__":
    sys.exit(main())
