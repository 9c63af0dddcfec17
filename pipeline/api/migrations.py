"""The operational schema in PostgreSQL (tenants, API keys), as versioned migrations.

Contracts:
- :data:`MIGRATIONS` is append-only: a released migration is never edited,
  a change is a new version. Each runs once, in its own transaction, and is
  recorded in ``schema_migrations`` (version, name, applied_at).
- :func:`migrate` applies the pending ones in version order under an advisory
  lock, so processes starting at once (worker, ``tickwire api``, the CLI) are
  safe; it refuses a database that is at a version this code does not know.
- The pgvector ``patterns`` table is not managed here: ``PgVectorStore.start()``
  creates it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

log = logging.getLogger("tickwire.api.migrations")

CONNECT_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 30.0
_LOCK = "tickwire.operational.migrations"


class MigrationError(RuntimeError):
    """The database's schema is newer than this code."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "tenants and api keys", """
        CREATE TABLE tenants (
            name text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE api_keys (
            key_id text PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{16}$'),
            tenant text NOT NULL REFERENCES tenants (name),
            scope text NOT NULL CHECK (scope IN ('read', 'admin')),
            salt bytea NOT NULL,
            secret_hash bytea NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            revoked_at timestamptz
        );
        CREATE INDEX api_keys_tenant ON api_keys (tenant);
    """),
)


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply pending migrations; returns the versions applied now (empty when up to date)."""
    applied_now: list[int] = []
    await conn.execute("SELECT pg_advisory_lock(hashtext($1))", _LOCK)
    try:
        await conn.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
            version integer PRIMARY KEY,
            name text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now())""")
        done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        known = {m.version for m in MIGRATIONS}
        if done - known:
            raise MigrationError(
                f"the operational database is at schema version {max(done)}, newer than this tickwire "
                f"(knows up to {max(known)}): upgrade tickwire")
        for migration in sorted(MIGRATIONS, key=lambda m: m.version):
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                                   migration.version, migration.name)
            applied_now.append(migration.version)
            log.info("applied operational schema migration %d (%s)", migration.version, migration.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", _LOCK)
    return applied_now


async def open_pool(dsn: str, *, max_size: int = 4) -> asyncpg.Pool:
    """A connection pool to the operational database, its schema migrated first."""
    conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S, command_timeout=COMMAND_TIMEOUT_S)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return await asyncpg.create_pool(dsn, min_size=1, max_size=max_size, timeout=CONNECT_TIMEOUT_S,
                                     command_timeout=COMMAND_TIMEOUT_S)
