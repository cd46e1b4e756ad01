"""Health, readiness, the OpenAPI schema URL, Swagger UI and the schema command."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from legacy_monolith.schema import write_schema


def test_healthz_needs_no_database(client: Client) -> None:
    # No django_db mark: any query here would raise "Database access not allowed".
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_ready_when_migrated(client: Client) -> None:
    assert client.get("/readyz").json() == {"status": "ready"}


@pytest.mark.django_db
def test_readyz_is_503_with_unapplied_migrations(client: Client, monkeypatch: Any) -> None:
    from django.db.migrations.executor import MigrationExecutor

    monkeypatch.setattr(MigrationExecutor, "migration_plan", lambda self, targets: [("x", 1)])
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "strangler monolith migrate" in response.json()["reason"]


@pytest.mark.django_db
def test_schema_is_served_at_a_stable_url(client: Client) -> None:
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    operations = [op for path in schema["paths"].values() for op in path]
    assert len(operations) >= 40
    assert "/api/products/{id}/" in schema["paths"]
    assert "/api/checkout/" in schema["paths"]


@pytest.mark.django_db
def test_swagger_ui_is_served(client: Client) -> None:
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


@pytest.mark.django_db
def test_swagger_ui_assets_come_from_this_server_not_a_cdn(client: Client) -> None:
    # given the Swagger UI page
    page = client.get("/api/docs/").content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css|png))"', page)
    # then every asset it loads is served here (works offline), and each one answers
    assert assets
    assert all(url.startswith("/static/") for url in assets), assets
    for url in assets:
        response = client.get(url)
        assert response.status_code == 200, url
        assert b"".join(response.streaming_content)  # type: ignore[attr-defined]


@pytest.mark.django_db
def test_api_root_links_every_collection(client: Client) -> None:
    response = client.get("/api/")
    assert response.status_code == 200
    links = response.json()
    assert links["products"] == "http://testserver/api/products/"
    assert links["checkout"] == "http://testserver/api/checkout/"
    assert links["docs"] == "http://testserver/api/docs/"
    assert all(client.get(url).status_code in (200, 401, 405) for url in links.values())


@pytest.mark.django_db
def test_static_view_serves_only_files_of_installed_apps(client: Client) -> None:
    assert client.get("/static/../settings.py").status_code == 404
    assert client.get("/static/nope.js").status_code == 404


@pytest.mark.django_db
def test_schema_command_writes_json_and_yaml(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "openapi.json"
    size = write_schema(out)
    assert size == out.stat().st_size
    assert "/api/orders/{id}/pay/" in json.loads(out.read_text())["paths"]
    yaml_out = tmp_path / "openapi.yaml"
    write_schema(yaml_out)
    assert yaml_out.read_text().startswith("openapi: 3")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.django_db
def test_write_schema_management_command(tmp_path: Path) -> None:
    from io import StringIO

    from django.core.management import call_command

    out = tmp_path / "schema.json"
    call_command("write_schema", "--out", str(out), stdout=StringIO())
    assert json.loads(out.read_text())["info"]["title"] == "Legacy shop API"
