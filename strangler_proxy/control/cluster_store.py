"""The cluster's shared state in PostgreSQL: routes versions with their audit, evidence, rollouts.

::

    strangler_versions   (cluster, id)   every validated routes version (its shared part) and
                                         the audit records of the flip that made it; append-only
    strangler_replicas   (cluster, replica)  each replica's cumulative evidence counters, admin
                                         address and whether it leads, upserted every poll
    strangler_rollouts   (cluster)       the rollout leader's rollout states (JSON)

A new version is announced with ``NOTIFY strangler_versions, '<cluster>'`` in the same
transaction as its insert, so a listener that hears it can read it. One session-level advisory
lock per cluster elects the rollout leader: PostgreSQL releases it when the leader's
connection ends, which is how a dead leader is replaced.

Every function takes an open :class:`psycopg.AsyncConnection` in autocommit mode; the caller
(``cluster.py``) owns connecting, timeouts and reconnecting.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import psycopg

CHANNEL = "strangler_versions"
_SCHEMA_LOCK = 0x5354_524E  # "STRN": serialises CREATE TABLE IF NOT EXISTS across replicas
_SCHEMA = """
CREATE TABLE IF NOT EXISTS strangler_versions (
    cluster text NOT NULL,
    id bigserial NOT NULL,
    digest text NOT NULL,
    body text NOT NULL,
    replica text NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now(),
    audit jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (cluster, id)
);
CREATE INDEX IF NOT EXISTS strangler_versions_digest ON strangler_versions (cluster, digest);
CREATE TABLE IF NOT EXISTS strangler_replicas (
    cluster text NOT NULL,
    replica text NOT NULL,
    admin text NOT NULL DEFAULT '',
    leader boolean NOT NULL DEFAULT false,
    version bigint NOT NULL DEFAULT 0,
    counts jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cluster, replica)
);
CREATE TABLE IF NOT EXISTS strangler_rollouts (
    cluster text PRIMARY KEY,
    states jsonb NOT NULL,
    replica text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True, slots=True)
class Version:
    """One published routes version."""

    id: int
    digest: str
    body: str  # the shared part of the routes file
    replica: str
    audit: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Peer:
    """Another replica as it last reported itself."""

    replica: str
    admin: str
    leader: bool
    version: int
    counts: dict[str, Any]
    age: float  # seconds since its last report


def digest(body: str) -> str:
    """The SHA-256 of a text (``cluster.py`` hashes a version's canonical form).

    >>> digest("")[:12]
    'e3b0c44298fc'
    """
    return hashlib.sha256(body.encode()).hexdigest()


def leader_key(cluster: str) -> int:
    """The advisory lock key of a cluster's rollout leader (a signed 64-bit number)."""
    return int.from_bytes(hashlib.sha256(f"strangler-leader:{cluster}".encode()).digest()[:8],
                          "big", signed=True)


async def ensure_schema(conn: psycopg.AsyncConnection[Any]) -> None:
    """Create the tables when missing (one replica at a time)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        await conn.execute(_SCHEMA)  # type: ignore[arg-type]


async def publish(conn: psycopg.AsyncConnection[Any], cluster: str, body: str, key: str,
                  replica: str, audit: list[dict[str, Any]]) -> Version:
    """Insert ``body`` (digest ``key``) as the newest version and announce it.

    When the newest version already has that digest and there is no audit to add, that one
    is returned and nothing is written.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (leader_key(cluster) ^ 1,))
        newest = await latest(conn, cluster)
        if newest is not None and newest.digest == key and not audit:
            return newest
        cur = await conn.execute(
            "INSERT INTO strangler_versions (cluster, digest, body, replica, audit) "
            "VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (cluster, key, body, replica, json.dumps(audit)))
        row = await cur.fetchone()
        assert row is not None
        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, cluster))
    return Version(int(row[0]), key, body, replica, audit)


async def latest(conn: psycopg.AsyncConnection[Any], cluster: str) -> Version | None:
    """The newest version of ``cluster``, or None before the first."""
    cur = await conn.execute(
        "SELECT id, digest, body, replica, audit FROM strangler_versions WHERE cluster = %s "
        "ORDER BY id DESC LIMIT 1", (cluster,))
    row = await cur.fetchone()
    return None if row is None else Version(int(row[0]), row[1], row[2], row[3], row[4])


async def audit_since(conn: psycopg.AsyncConnection[Any], cluster: str, after: int,
                      upto: int) -> list[dict[str, Any]]:
    """The audit records of versions ``after < id <= upto``, oldest first."""
    cur = await conn.execute(
        "SELECT audit FROM strangler_versions WHERE cluster = %s AND id > %s AND id <= %s "
        "ORDER BY id", (cluster, after, upto))
    return [record for (audit,) in await cur.fetchall() for record in audit]


async def known(conn: psycopg.AsyncConnection[Any], cluster: str, key: str) -> bool:
    """True when a version with this digest was ever published."""
    cur = await conn.execute("SELECT 1 FROM strangler_versions WHERE cluster = %s AND "
                             "digest = %s LIMIT 1", (cluster, key))
    return await cur.fetchone() is not None


async def try_lead(conn: psycopg.AsyncConnection[Any], cluster: str) -> bool:
    """Take the cluster's leader lock if free (held until this connection ends)."""
    cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (leader_key(cluster),))
    row = await cur.fetchone()
    return bool(row and row[0])


async def report(conn: psycopg.AsyncConnection[Any], cluster: str, replica: str, admin: str,
                 leader: bool, version: int, counts: dict[str, Any]) -> list[Peer]:
    """Upsert this replica's evidence; return every other replica's last report."""
    await conn.execute(
        "INSERT INTO strangler_replicas (cluster, replica, admin, leader, version, counts, "
        "updated_at) VALUES (%s, %s, %s, %s, %s, %s, now()) ON CONFLICT (cluster, replica) DO "
        "UPDATE SET admin = EXCLUDED.admin, leader = EXCLUDED.leader, version = "
        "EXCLUDED.version, counts = EXCLUDED.counts, updated_at = now()",
        (cluster, replica, admin, leader, version, json.dumps(counts)))
    cur = await conn.execute(
        "SELECT replica, admin, leader, version, counts, "
        "EXTRACT(EPOCH FROM now() - updated_at) FROM strangler_replicas "
        "WHERE cluster = %s AND replica <> %s", (cluster, replica))
    return [Peer(r[0], r[1], bool(r[2]), int(r[3]), r[4], float(r[5]))
            for r in await cur.fetchall()]


async def save_rollouts(conn: psycopg.AsyncConnection[Any], cluster: str, replica: str,
                        states: dict[str, Any]) -> None:
    """Store the leader's rollout states."""
    await conn.execute(
        "INSERT INTO strangler_rollouts (cluster, states, replica, updated_at) VALUES "
        "(%s, %s, %s, now()) ON CONFLICT (cluster) DO UPDATE SET states = EXCLUDED.states, "
        "replica = EXCLUDED.replica, updated_at = now()",
        (cluster, json.dumps(states), replica))


async def load_rollouts(conn: psycopg.AsyncConnection[Any], cluster: str,
                        ) -> dict[str, Any] | None:
    """The rollout states the last leader stored, or None."""
    cur = await conn.execute("SELECT states FROM strangler_rollouts WHERE cluster = %s",
                             (cluster,))
    row = await cur.fetchone()
    return None if row is None else dict(row[0])


__all__ = ["CHANNEL", "Peer", "Version", "audit_since", "digest", "ensure_schema", "known",
           "latest", "leader_key", "load_rollouts", "publish", "report", "save_rollouts",
           "try_lead"]
