"""`strangler export ENGINE`: output every engine accepts, and one-line refusals that name the
route, the feature and the alternative."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from engine_harness import need

from strangler_proxy.config import parse_config
from strangler_proxy.export import ExportError, build_plan
from strangler_proxy.export.istio import check_istio, istio_resources, render_istio

HEAD = """
[proxy]
listen = "127.0.0.1:18080"
trusted_proxies = ["10.0.0.0/8"]

[admin]
token = "t"

[upstreams.monolith]
url = "http://127.0.0.1:8000"

[upstreams.catalog]
url = "https://localhost:8443/v2"
host = "rewrite"
"""

EVERYTHING = HEAD + """
[shadow]
comparator_url = "http://127.0.0.1:8090"

[[routes]]
name = "catalog"
match = { path_prefix = "/api/products/", methods = ["GET", "HEAD"] }
mode = "canary"
percent = 12.5
target = "catalog"
sticky = "cookie:sessionid"
group = "shop"

[[routes]]
name = "item"
match = { path_template = "/api/items/{id}/", headers = { "X-Beta" = "1" } }
mode = "service"
target = "catalog"
websocket = true

[[routes]]
name = "reviews"
match = { path = "/api/reviews" }
mode = "shadow"
target = "catalog"
shadow = { percent = 25 }
"""


def export(tmp_path: Path, engine: str, text: str, *args: str,
           ) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "strangler.toml"
    config.write_text(text)
    return subprocess.run([sys.executable, "-m", "strangler.cli", "export", engine,
                           "--config", str(config), *args],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("engine", ["nginx", "envoy"])
def test_a_file_using_every_feature_passes_the_engines_own_check(
        tmp_path: Path, engine: str) -> None:
    need(engine)
    out = tmp_path / ("envoy.yaml" if engine == "envoy" else "nginx.conf")
    done = export(tmp_path, engine, EVERYTHING, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert f"checked with {engine}" in done.stdout


def test_haproxy_checks_what_it_can_express(tmp_path: Path) -> None:
    need("haproxy")
    text = EVERYTHING.replace('mode = "shadow"', 'mode = "monolith"')
    done = export(tmp_path, "haproxy", text, "--out", str(tmp_path / "haproxy.cfg"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "strangler_bucket.lua").exists()  # the canary needs the Lua bucket


def test_istio_output_matches_istios_schemas_and_reads_back_as_yaml() -> None:
    pytest.importorskip("cloudcoil.models.istio")
    plan = build_plan(parse_config(EVERYTHING.replace('sticky = "cookie:sessionid"',
                                                      'sticky = "header:X-User-Id"')))
    resources = istio_resources(plan)
    assert [r["kind"] for r in resources] == ["VirtualService", "EnvoyFilter"]
    assert check_istio(resources)
    assert list(yaml.safe_load_all(render_istio(plan))) == resources
    # a field the schema does not know is caught, not silently dropped
    tampered = copy.deepcopy(resources)
    tampered[0]["spec"]["http"][0]["mirrorPercentge"] = {"value": 5.0}  # misspelt
    with pytest.raises(ExportError, match="fields Istio's schema does not know"):
        check_istio(tampered)


FALLBACK = """
[[routes]]
name = "fragile"
match = { path_prefix = "/api/fragile/" }
mode = "service"
target = "catalog"
fallback = true
"""
SHADOW = """
[[routes]]
name = "reviews"
match = { path_prefix = "/api/reviews/" }
mode = "shadow"
target = "catalog"
"""
SHADOW_WRITES = SHADOW + "shadow = { writes = true }\n"
CLIENT_IP_CANARY = """
[[routes]]
name = "cart"
match = { path_prefix = "/api/cart/" }
mode = "canary"
percent = 10
target = "catalog"
"""

UNDERSCORE_HEADER = """
[[routes]]
name = "beta"
match = { path_prefix = "/api/beta/", headers = { "X_Beta" = "1" } }
mode = "service"
target = "catalog"
"""


@pytest.mark.parametrize(("engine", "routes", "extra", "words"), [
    ("haproxy", FALLBACK, (), ['routes[0] ("fragile", line', "fallback = true",
                               "export to nginx"]),
    ("envoy", FALLBACK, (), ["envoy cannot express fallback", "set fallback = false"]),
    ("istio", FALLBACK, (), ["istio cannot express fallback"]),
    ("haproxy", SHADOW, ("--comparator-url", "http://127.0.0.1:1"),
     ["haproxy cannot express shadow mode", "export this file to nginx, envoy or istio"]),
    ("nginx", SHADOW, (), ["shadow mode without a comparator", "issue 16",
                           "--comparator-url", "keep this route on our proxy"]),
    ("envoy", SHADOW_WRITES, ("--comparator-url", "http://127.0.0.1:1"),
     ["shadow.writes = true", "set shadow.writes = false"]),
    ("istio", CLIENT_IP_CANARY, (), ['sticky = "client_ip"', "header or cookie"]),
    ("nginx", UNDERSCORE_HEADER, (), ["the header 'x_beta'", "letters, digits and -"]),
])
def test_what_an_engine_cannot_express_is_refused_in_one_line(
        tmp_path: Path, engine: str, routes: str, extra: tuple[str, ...],
        words: list[str]) -> None:
    done = export(tmp_path, engine, HEAD + routes, *extra)
    assert done.returncode == 2
    assert done.stdout == ""
    line = done.stderr.strip()
    assert "\n" not in line
    assert line.startswith("strangler: error: routes[0]")
    for word in words:
        assert word in line


def test_apply_checks_and_installs_the_engine_named_in_the_export_table(
        tmp_path: Path) -> None:
    need("nginx")
    output = tmp_path / "engine" / "nginx.conf"
    text = HEAD + f'\n[export]\nengine = "nginx"\noutput = "{output}"\n'
    wrong = export(tmp_path, "haproxy", text, "--apply")
    assert wrong.returncode == 2
    assert '--apply needs [export].engine = "haproxy"' in wrong.stderr
    done = export(tmp_path, "nginx", text, "--apply")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote {output}; no running nginx found to reload"
    assert "map \"$request_method $strangler_path \"" in output.read_text()
