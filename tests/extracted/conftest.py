"""Fixtures of the catalog service's tests: API clients and real processes on 127.0.0.1."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from rest_framework.test import APIClient

STAFF_TOKEN = "staff-token-for-tests"
SYNC_TOKEN = "sync-token-for-tests"
SHADOW_SECRET = "shadow-marker-secret-for-tests"  # both servers roll back copies signed with it


@pytest.fixture(autouse=True)
def _catalog_tokens(settings: Any) -> None:
    settings.SERVICE_STAFF_TOKENS = [STAFF_TOKEN]
    settings.SERVICE_SYNC_TOKEN = SYNC_TOKEN
    settings.SERVICE_AUTH_URL = ""


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


@pytest.fixture
def staff() -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {STAFF_TOKEN}")
    return client


@pytest.fixture
def sync() -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {SYNC_TOKEN}")
    return client


@pytest.fixture
def shop(db: None) -> dict[str, Any]:
    """Two categories, two brands, three tags and three products."""
    from django.utils import timezone

    from extracted.catalog.models import Brand, Category, Product, ProductTag, Tag

    books = Category.objects.create(id=1, name="Books", slug="books")
    novels = Category.objects.create(id=2, name="Novels", slug="novels", parent=books)
    acme = Brand.objects.create(id=1, name="Acme", slug="acme", country="DE")
    zeta = Brand.objects.create(id=2, name="Zeta", slug="zeta", country="FR")
    tags = [Tag.objects.create(id=i, name=n, slug=n) for i, n in enumerate(["new", "sale",
                                                                            "gift"], 1)]
    now = timezone.now()
    products = [
        Product.objects.create(id=i, sku=f"SKU-{i}", name=name, slug=f"p-{i}", description=desc,
                               category=cat, brand=brand, price=price, created_at=now,
                               updated_at=now)
        for i, name, desc, cat, brand, price in [
            (1, "Blue mug", "a mug", books, acme, "9.50"),
            (2, "Red novel", "a thriller", novels, zeta, "19.99"),
            (3, "Green pen", "writes", books, acme, "1.25"),
        ]
    ]
    ProductTag.objects.create(product=products[0], tag=tags[1])
    ProductTag.objects.create(product=products[0], tag=tags[0])
    return {"categories": [books, novels], "brands": [acme, zeta], "tags": tags,
            "products": products}


# --- real processes --------------------------------------------------------------------


BIN = Path(sys.executable).parent
STRANGLER = [sys.executable, "-m", "strangler.cli"]


def pg_url() -> str | None:
    """The PostgreSQL server to create test databases on, if the environment names one."""
    return os.environ.get("STRANGLER_TEST_PG_URL") or os.environ.get("DATABASE_URL") or None


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",
                                                            "CATALOG_DATABASE_URL",
                                                            "ORDERING_DATABASE_URL")}
    env.update(PYTHONDONTWRITEBYTECODE="1", CATALOG_SYNC_TOKEN=SYNC_TOKEN,
               CATALOG_STAFF_TOKENS=STAFF_TOKEN, ORDERING_STAFF_TOKENS=STAFF_TOKEN,
               STRANGLER_SHADOW_SECRET=SHADOW_SECRET, **extra)
    return env


@dataclass
class Process:
    """A child process with its log file; ``stop`` is safe to call twice."""

    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        handle = self.log.open("ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=handle,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        handle.close()
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


@dataclass
class CatalogServer:
    """A service (the catalog unless ``service`` names another) under gunicorn on 127.0.0.1,
    port from the OS on first start."""

    database_url: str
    workdir: Path
    port: int = 0
    process: Process | None = None
    starts: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)
    service: str = "catalog"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def migrate(self) -> None:
        subprocess.run([*STRANGLER, self.service, "migrate", "--database-url",
                        self.database_url],
                       env=base_env(), check=True, timeout=120, capture_output=True)

    def start(self) -> CatalogServer:
        self.starts += 1
        log = self.workdir / f"{self.service}-{self.starts}.log"
        env = base_env(**{f"{self.service.upper()}_DATABASE_URL": self.database_url},
                       DJANGO_SETTINGS_MODULE=f"extracted.{self.service}.settings",
                       **self.extra_env)
        argv = [str(BIN / "gunicorn"), f"extracted.{self.service}.wsgi", "--bind",
                f"127.0.0.1:{self.port}", "--workers", "2", "--graceful-timeout", "2"]
        self.process = Process(argv, env, log).start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace") if log.exists() else ""
            found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", text)
            if found and self._ready(int(found.group(1))):
                self.port = int(found.group(1))
                return self
            assert self.process.proc is not None
            if self.process.proc.poll() is not None:
                raise AssertionError(f"{self.service} service exited:\n{text[-2000:]}")
            time.sleep(0.1)
        raise AssertionError(f"{self.service} service did not start:\n"
                             f"{log.read_text()[-2000:]}")

    def _ready(self, port: int) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def relay_argv(source_url: str, target: str, table: str = "outbox_outboxevent",
               stream: str = "monolith", *extra: str) -> list[str]:
    return [*STRANGLER, "relay", "--source-db", source_url, "--outbox-table", table,
            "--target", target, "--stream", stream, "--token", SYNC_TOKEN,
            "--poll-interval", "0.05", "--max-backoff", "0.5", "--hole-grace", "1", *extra]


@pytest.fixture
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Factory of empty databases by URL: SQLite files, or throwaway PostgreSQL databases.

    Parametrise a test with ``indirect`` values "sqlite" or "postgresql"; the PostgreSQL
    variant skips without STRANGLER_TEST_PG_URL (or DATABASE_URL) and drops what it made.
    """
    vendor = getattr(request, "param", "sqlite")
    created: list[str] = []
    server = pg_url()
    if vendor == "postgresql" and server is None:
        pytest.skip("PostgreSQL variant: set STRANGLER_TEST_PG_URL=postgresql://postgres@"
                    "127.0.0.1:5432/test to run it")

    def make(name: str) -> str:
        if vendor == "sqlite":
            path = tmp_path / f"{name}.sqlite3"
            import sqlite3

            sqlite3.connect(path).close()
            return f"sqlite:///{path}"
        import psycopg

        assert server is not None
        db = f"strangler_e_{name}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db}"')
        created.append(db)
        return server.rsplit("/", 1)[0] + f"/{db}"

    make.vendor = vendor  # type: ignore[attr-defined]
    try:
        yield make
    finally:
        if created:
            import psycopg

            assert server is not None
            with psycopg.connect(server, autocommit=True) as conn:
                for db in created:
                    conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


# size -> (a copy of the first SQLite shop seeded in this session, taken before it served a
# request; its seed output). Later tests copy it instead of migrating and seeding again
# (~7 s each), so every SQLite monolith starts from the same state.
_SQLITE_TEMPLATES: dict[str, tuple[Path, str]] = {}


def _copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database (its WAL included), by the backup API."""
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


@dataclass
class MonolithServer:
    """The demo monolith, migrated and seeded small, under gunicorn on 127.0.0.1.

    ``database_url`` empty means SQLite in ``workdir`` (``STRANGLER_DATA_DIR``).
    """

    workdir: Path
    database_url: str = ""
    port: int = 0
    process: Process | None = None
    seed_output: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def source_db(self) -> str:
        """The monolith's database URL, as the relay, backfill and reconcile take it."""
        return self.database_url or f"sqlite:///{self.workdir / 'monolith.sqlite3'}"

    def env(self) -> dict[str, str]:
        env = base_env(STRANGLER_DATA_DIR=str(self.workdir),
                       DJANGO_SETTINGS_MODULE="legacy_monolith.settings")
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        return env

    def prepare(self, size: str = "small") -> MonolithServer:
        """Migrate and seed; on SQLite, copy the first seeded file (the seed is deterministic)."""
        if self.database_url:
            self._migrate_and_seed(size)
            return self
        database = self.workdir / "monolith.sqlite3"
        template = _SQLITE_TEMPLATES.get(size)
        if template is None:
            self._migrate_and_seed(size)
            pristine = self.workdir / f"seeded-{size}-template.sqlite3"  # never served
            _copy_sqlite(database, pristine)
            _SQLITE_TEMPLATES[size] = (pristine, self.seed_output)
            return self
        pristine, self.seed_output = template
        _copy_sqlite(pristine, database)
        return self

    def _migrate_and_seed(self, size: str) -> None:
        for argv in (["monolith", "migrate"], ["monolith", "seed", "--size", size]):
            done = subprocess.run([*STRANGLER, *argv], env=self.env(), capture_output=True,
                                  text=True, timeout=600, check=False)
            assert done.returncode == 0, f"{argv}: {done.stderr[-2000:]}"
            self.seed_output = done.stdout

    def token(self, username: str) -> str:
        found = re.search(rf"{username}\s+password \S+\s+token (\w+)", self.seed_output)
        assert found, f"no token for {username} in the seed's output:\n{self.seed_output}"
        return found.group(1)

    def start(self, workers: int = 2) -> MonolithServer:
        log = self.workdir / "monolith.log"
        argv = [sys.executable, "-m", "gunicorn", "legacy_monolith.wsgi:application", "--bind",
                f"127.0.0.1:{self.port}", "--workers", str(workers), "--threads", "2",
                "--graceful-timeout", "2"]
        self.process = Process(argv, self.env(), log).start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace") if log.exists() else ""
            found = re.findall(r"Listening at: http://127\.0\.0\.1:(\d+)", text)
            if found:
                self.port = int(found[-1])
                try:
                    if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
            assert self.process.proc is not None
            if self.process.proc.poll() is not None:
                raise AssertionError(f"monolith exited:\n{text[-2000:]}")
            time.sleep(0.1)
        raise AssertionError(f"monolith did not start:\n{log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
