"""The compiled hot path (strangler_proxy/native.py): built by `make install`, loaded only while
it matches its sources, and writing the same bytes as pure Python for the whole framing corpus."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from strangler_proxy import native

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("native_driver.py")
ROUTES = """
[proxy]
listen = "127.0.0.1:0"
route_header = true
access_log = "off"

[admin]
listen = "127.0.0.1:0"
token = "native-driver-token"

[upstreams.monolith]
url = "http://127.0.0.1:9"

[upstreams.service]
url = "http://127.0.0.1:9"
host = "rewrite"

[[routes]]
name = "framing"
match = { path_prefix = "/framing-" }
mode = "service"
target = "service"
fallback = true

[[routes]]
name = "half"
match = { path_prefix = "/pipelining-" }
mode = "canary"
percent = 50
target = "service"
sticky = "header:Host"
"""

needs_build = pytest.mark.skipif(
    native.check()[0] != "compiled",
    reason=f"skipped: the hot path is not compiled here ({native.check()[1]})")


def _python(code: str, env: dict[str, str] | None = None, path: Path = ROOT) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True, cwd=path,
                          env={**os.environ, "PYTHONPATH": str(path), **(env or {})})
    return done.stdout.strip()


LOADED = ("import importlib, strangler_proxy.native as n, sys; "
          "[importlib.import_module(m) for m in n.MODULES]; "
          "print(n.mode, sorted({sys.modules[m].__file__.rsplit('.', 1)[-1] for m in n.MODULES}))")


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                    reason="skipped: no C compiler here, so the hot path runs as pure Python")
def test_make_install_compiled_the_hot_path() -> None:
    # `make install` builds it; on a machine with a C compiler (ours, CI's) it must be there
    # and current, else the proxy silently runs ~40 % slower.
    state, why = native.check()
    assert state == "compiled", f"the hot path is not compiled: {why}"
    assert _python(LOADED) == "compiled ['so']"


@needs_build
def test_an_edited_source_loads_pure_python_everywhere(tmp_path: Path) -> None:
    # given: a copy of the package with its compiled files, and one compiled module edited
    copy = tmp_path / "tree"
    shutil.copytree(ROOT / "strangler_proxy", copy / "strangler_proxy",
                    ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / "strangler_proxy" / "routing.py").open("a") as f:
        f.write("\nEDITED = True\n")
    # then: every compiled module comes from its .py (a mix would call stale compiled code),
    # and the status says why
    assert _python(LOADED, path=copy) == "pure ['py']"
    assert _python("import strangler_proxy.routing as r; print(r.EDITED)", path=copy) == "True"
    status = _python("from strangler_proxy.native_build import main; main(['status', '--json'])",
                     path=copy)
    assert "sources changed" in json.loads(status)["reason"]


@needs_build
def test_pure_python_on_request() -> None:
    assert _python(LOADED, env={native.PURE_ENV: "1"}) == "pure ['py']"


@needs_build
@pytest.mark.timeout(120)
def test_compiled_and_pure_write_the_same_bytes_for_the_corpus(tmp_path: Path) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES)
    runs = {}
    for label, env in (("compiled", {}), ("pure", {native.PURE_ENV: "1"})):
        out = tmp_path / f"{label}.json"
        subprocess.run([sys.executable, str(DRIVER), str(routes), str(out)], capture_output=True,
                       text=True, timeout=100, check=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT), **env})
        runs[label] = json.loads(out.read_text())
    compiled, pure = runs["compiled"], runs["pure"]
    assert (compiled.pop("mode"), pure.pop("mode")) == ("compiled", "pure")
    assert len(compiled) >= 300  # ~100 cases, three ways each
    differ = [key for key in compiled if compiled[key] != pure.get(key)]
    assert differ == [], f"{len(differ)} cases differ, first {differ[0]}:\n" \
        f"compiled {compiled[differ[0]]}\npure     {pure[differ[0]]}"
    # and the corpus did exercise both upstreams and refusals
    assert any(v["to service"] for v in compiled.values())
    assert any(v["to monolith"] for v in compiled.values())
    assert any(v["to client"].startswith("HTTP/1.1 400") for v in compiled.values())
