"""``tickwire tenants``, ``tickwire keys`` and ``tickwire api``.

Exit codes: 0 done; 1 failed (PostgreSQL unreachable, no such tenant or key);
2 invalid input or settings. ``keys create`` writes the key alone on stdout
(``KEY=$(tickwire keys create --tenant acme)``) and everything else on stderr.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

import asyncpg
import click
from rich.table import Table
from rich.text import Text

from pipeline.api.keys import PREFIX, SCOPES, create_key, list_keys, revoke_key
from pipeline.api.migrations import open_pool
from pipeline.api.tenants import TenantError, UnknownTenant, add_tenant, list_tenants
from pipeline.cli.console import EXIT_FAILURE, EXIT_USAGE, fail, out_json_lines, print_table, say
from pipeline.cli.console import settings as cli_settings
from pipeline.config import Settings

T = TypeVar("T")
EXIT_CODES = """\b
Exit codes: 0 done; 1 failed (PostgreSQL unreachable, no such tenant or
key); 2 invalid input or settings."""
#: A key id: the 16 hex digits after ``tw_`` (``tw_<id>_<secret>``).
_KEY_ID = re.compile(r"^[0-9a-f]{16}$")


def _settings() -> Settings:
    return cli_settings()


def _where(dsn: str) -> str:
    """host:port/database of a DSN (never its credentials)."""
    parts = urlsplit(dsn)
    return f"{parts.hostname}:{parts.port or 5432}{parts.path}"


def _run(action: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    """Run ``action`` on a pool to the migrated operational database; exit 1 if it cannot be reached, 2 on bad input."""
    settings = _settings()

    async def main() -> T:
        pool = await open_pool(settings.postgres_connection_dsn, max_size=1)
        try:
            return await action(pool)
        finally:
            await pool.close()

    try:
        return asyncio.run(main())
    except UnknownTenant as exc:
        fail(str(exc), EXIT_FAILURE)
    except TenantError as exc:
        fail(str(exc), EXIT_USAGE)
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError) as exc:
        fail(f"PostgreSQL at {_where(settings.postgres_dsn)} refused the login ({type(exc).__name__}: {exc}): check "
             "TICKWIRE_POSTGRES_DSN's user and TICKWIRE_POSTGRES_PASSWORD", EXIT_FAILURE)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        fail(f"cannot use PostgreSQL at {_where(settings.postgres_dsn)} (TICKWIRE_POSTGRES_DSN): {type(exc).__name__}: {exc}; "
             "start it (`tickwire stack up` for the local stack) or set TICKWIRE_POSTGRES_DSN", EXIT_FAILURE)


@click.group(epilog=EXIT_CODES)
def tenants() -> None:
    """Tenants: who may have API keys (operational database)."""


@tenants.command("add", epilog=EXIT_CODES)
@click.argument("name")
def tenants_add(name: str) -> None:
    """Register tenant NAME (idempotent)."""
    created = _run(lambda pool: add_tenant(pool, name))
    say(f"tenant {name}: {'added' if created else 'already registered'}")


@tenants.command("list", epilog=EXIT_CODES)
@click.option("--json", "as_json", is_flag=True,
              help='One JSON object per line and tenant: {"tenant", "created_at" (ISO 8601), "active_keys"}.')
def tenants_list(as_json: bool) -> None:
    """Every tenant and its count of active keys."""
    found = _run(list_tenants)
    if as_json:
        out_json_lines({"tenant": t.name, "created_at": t.created_at.isoformat(), "active_keys": t.keys} for t in found)
        return
    table = Table("tenant", "created", "active keys")
    for tenant in found:
        table.add_row(Text(tenant.name), tenant.created_at.isoformat(timespec="seconds"), str(tenant.keys))
    print_table(table)


@click.group(epilog=EXIT_CODES)
def keys() -> None:
    """API keys: create (shown once), list, revoke."""


@keys.command("create", epilog=EXIT_CODES)
@click.option("--tenant", required=True, help="A registered tenant (tickwire tenants add NAME).")
@click.option("--scope", type=click.Choice(SCOPES), default="read", show_default=True,
              help="read: every /v1 read of the tenant; admin: read and managing the tenant's keys.")
def keys_create(tenant: str, scope: str) -> None:
    """Create a key; prints it once, on stdout (only a salted hash is stored)."""
    issued = _run(lambda pool: create_key(pool, tenant, scope))
    say(f"key {issued.key_id} ({issued.scope}) for tenant {issued.tenant}; it is shown only now, store it safely:")
    click.echo(issued.key)


@keys.command("revoke", epilog=EXIT_CODES)
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke key KEY_ID (the 16 hex digits after tw_); API processes refuse it within seconds."""
    if not _KEY_ID.match(key_id):
        fail(f"bad key id {key_id!r}: a key id is the 16 hex digits after {PREFIX} in the key "
             f"({PREFIX}<key id>_<secret>), as `tickwire keys list` shows it", EXIT_USAGE)
    outcome = _run(lambda pool: revoke_key(pool, key_id))
    if outcome == "not found":
        fail(f"no key {key_id} (`tickwire keys list` shows every key)", EXIT_FAILURE)
    say(f"key {key_id}: {outcome}")


@keys.command("list", epilog=EXIT_CODES)
@click.option("--tenant", default=None, help="Only this tenant's keys.")
@click.option("--json", "as_json", is_flag=True,
              help='One JSON object per line and key: {"key_id", "tenant", "scope", "created_at", "revoked_at"} '
                   "(times ISO 8601; revoked_at null while active). Never a secret.")
def keys_list(tenant: str | None, as_json: bool) -> None:
    """Keys (never their secrets), revoked ones included."""
    found = _run(lambda pool: list_keys(pool, tenant))
    if as_json:
        out_json_lines({"key_id": k.key_id, "tenant": k.tenant, "scope": k.scope, "created_at": k.created_at.isoformat(),
                        "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None} for k in found)
        return
    table = Table("key id", "tenant", "scope", "created", "revoked")
    for key in found:
        revoked = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else ""
        table.add_row(key.key_id, Text(key.tenant), key.scope, key.created_at.isoformat(timespec="seconds"), revoked)
    print_table(table)


@click.command(epilog="""\b
Exit codes: 0 stopped cleanly; 1 failed; 2 invalid settings, or a worker
holds the chDB data directory.""")
def api() -> None:
    """Serve the query API as its own process (any number beside the workers with a ClickHouse server; with chDB
    only while no worker holds the data directory, which it then holds itself: exit 2 if a worker does)."""
    from pipeline.api.server import StandaloneError, check_standalone, serve

    settings = _settings()
    try:
        check_standalone(settings)
        serve(settings)  # logs as the worker does (pipeline.core.logs)
    except StandaloneError as exc:
        fail(f"tickwire api: {exc}", EXIT_USAGE)
