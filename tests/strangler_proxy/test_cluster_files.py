"""What replicas publish and adopt, without a database: the shared part of the routes file,
the evidence counters as JSON, and the ``[cluster]`` table's validation."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

from strangler_proxy.config import parse_config
from strangler_proxy.control import cluster, cluster_store
from strangler_proxy.control.cluster import (
    add_counts,
    counts_from_json,
    counts_json,
    shared_digest,
    shared_part,
    with_local,
)
from strangler_proxy.errors import ConfigError
from strangler_proxy.live_evidence import sample
from strangler_proxy.metrics import Metrics

SCALE = Path(__file__).resolve().parents[2] / "extracted" / "deploy" / "strangler-scale.toml"
BASE = ('# shared flags\n[proxy]\nlisten = "127.0.0.1:1"\n\n[admin]\ntoken = "t"\n\n'
        '[cluster]\ndatabase = "postgresql://db/x"\nreplica_id = "a"\n\n'
        '[upstreams.monolith]\nurl = "http://m:1"\n\n[[routes]]\nname = "r"\n'
        'match = { path_prefix = "/r/" }\nmode = "monolith"  # flipped by people\n')


@pytest.mark.parametrize("module", [cluster, cluster_store])
def test_doctests_of_the_cluster_modules_pass(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.failed == 0
    assert result.attempted > 0


def test_a_replica_adopts_the_shared_part_under_its_own_tables() -> None:
    # given another replica's file: other listeners and name, a flipped route
    theirs = BASE.replace("127.0.0.1:1", "10.0.0.2:8080").replace('"a"', '"b"').replace(
        'mode = "monolith"', 'mode = "service"')
    # when this replica adopts what they published
    mine = with_local(shared_part(theirs), BASE)
    config = parse_config(mine)
    # then it serves their routes on its own listener, under its own name
    assert (config.routes[0].mode, config.proxy.listen, config.cluster.replica_id) == (
        "service", "127.0.0.1:1", "a")
    # and the file keeps its comments, and its shared part is what was published
    assert mine.startswith("# shared flags\n[proxy]")
    assert "# flipped by people" in mine
    assert shared_digest(shared_part(mine)) == shared_digest(shared_part(theirs))


def test_only_the_replicas_own_tables_are_not_shared() -> None:
    digest = shared_digest(shared_part(BASE))
    assert shared_digest(shared_part(BASE.replace("127.0.0.1:1", "0.0.0.0:2"))) == digest
    assert shared_digest(shared_part(BASE.replace("http://m:1", "http://m:2"))) != digest


def test_the_compose_routes_file_round_trips_exactly() -> None:
    text = SCALE.read_text()
    assert with_local(shared_part(text), text) == text


def test_evidence_counters_survive_json_and_add_up() -> None:
    metrics = Metrics()
    metrics.observe("r", "monolith", 200, 0.004)
    metrics.observe("r", "svc", 503, 0.2)
    mine = sample(metrics, {"r": "svc"})
    total = counts_from_json(counts_json(mine))
    add_counts(total, mine)
    assert (total["r"]["monolith"].requests, total["r"]["service"].errors) == (2, 2)
    assert total["r"]["service"].bins == tuple(2 * b for b in mine["r"]["service"].bins)


@pytest.mark.parametrize(("table", "message"), [
    ('database = "mysql://db/x"', "cluster.database: 'mysql://db/x' is not a PostgreSQL URL"),
    ("name = \"a b\"", "cluster.name: 'a b' must be 1-63 letters"),
    ("poll_interval = 0", "cluster.poll_interval: 0 is not between 0.05 and 60"),
    ("replica_id = \"x\"", "cluster: needs database ="),
])
def test_a_bad_cluster_table_names_the_key_and_line(table: str, message: str) -> None:
    text = ('[admin]\ntoken = "t"\n[upstreams.monolith]\nurl = "http://m:1"\n[cluster]\n'
            + ('database = "postgresql://db/x"\n' if "database" not in table
               and "replica_id" not in table else "") + table + "\n")
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert message in str(caught.value)
    assert "(in strangler.toml, line " in str(caught.value)
