"""The scaled topology (docker-compose.scale.yml over docker-compose.yml) as compose, nginx and
our parser read it: it resolves, runs only commands that exist, and its files are valid."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from strangler.cli import COMMANDS
from strangler_proxy.config import SCHEMA, parse_config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "extracted" / "deploy"
SCALE = ("proxy-1", "proxy-2", "nginx", "comparator", "strangler-db", "rabbitmq",
         "catalog-consumer")


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (make sysdeps installs it with apt-get)")
    done = subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "-f", "docker-compose.scale.yml",
         "config"], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return dict(yaml.safe_load(done.stdout))


def _words(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    words = command if isinstance(command, list) else command.split()
    if words[:2] == ["sh", "-c"]:  # the proxies: copy the routes file, then exec strangler
        words = words[2].rpartition("exec ")[2].split()
    return list(words)


def test_the_scaled_topology_resolves_with_every_part(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert set(SCALE) <= set(services)
    # the single proxy of the base file is kept for `--profile single` only
    assert services["proxy"]["profiles"] == ["single"]
    # the replicas share one cluster database and each keeps its own routes file
    for name in ("proxy-1", "proxy-2"):
        env = services[name]["environment"]
        assert env["STRANGLER_CLUSTER_DB"].endswith("@strangler-db:5432/strangler")
        assert _words(services[name])[:4] == ["strangler", "proxy", "--config",
                                              "/data/strangler.toml"]
    volumes = {str(services[n]["volumes"][0]).split(":")[0] for n in ("proxy-1", "proxy-2")}
    assert len(volumes) == 2, "the replicas must not share one routes file"
    assert services["relay"]["environment"]["STRANGLER_SYNC_TRANSPORT"] == "amqp"
    assert _words(services["comparator"])[:3] == ["strangler", "shadow", "serve"]
    assert _words(services["catalog-consumer"]) == ["strangler", "catalog", "consume"]


def test_every_service_runs_a_command_that_exists(resolved: dict[str, Any]) -> None:
    for name, service in resolved["services"].items():
        words = _words(service)
        if words[:1] == ["strangler"] and len(words) > 1:
            assert words[1] in COMMANDS, f"service {name} runs unknown `strangler {words[1]}`"
        build = service.get("build")
        if build:
            context = Path(build["context"] if isinstance(build, dict) else build)
            assert (context / "Dockerfile").exists(), name


def test_the_scaled_routes_file_is_valid_and_clustered() -> None:
    text = (DEPLOY / "strangler-scale.toml").read_text()
    if "proxy_sends_to" not in SCHEMA["shadow"]:
        pytest.skip("shadow.proxy_sends_to (the standalone comparator, issue 16a) is not in "
                    "this tree yet; the file uses it")
    config = parse_config(text, source="strangler-scale.toml")
    assert config.cluster.database_env == "STRANGLER_CLUSTER_DB"
    assert config.shadow.store.startswith("postgresql://")
    # the same routes as the one-proxy compose file
    single = parse_config((DEPLOY / "strangler-compose.toml").read_text())
    assert [r.name for r in config.routes] == [r.name for r in single.routes]


def test_nginx_accepts_the_front_config(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                      else None)
    if nginx is None:
        pytest.skip("nginx is not installed (make sysdeps installs it)")
    # the containers' names resolve only inside compose: point them at this host
    text = re.sub(r"proxy-[12]:8080", "127.0.0.1:8080", (DEPLOY / "nginx-scale.conf")
                  .read_text()).replace("pid /tmp/nginx.pid", f"pid {tmp_path}/nginx.pid")
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    done = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(conf), "-e", "stderr"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
