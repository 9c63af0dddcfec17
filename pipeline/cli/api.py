"""``tickwire tenants``, ``tickwire keys`` and ``tickwire api``.

Exit codes: 0 done; 1 failed (PostgreSQL unreachable, no such tenant or key);
2 invalid input or settings. ``keys create`` writes the key alone on stdout
(``KEY=$(tickwire keys create --tenant acme)``) and everything else on stderr.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

import asyncpg
import click
from rich.console import Console
from rich.table import Table

from pipeline.api.keys import SCOPES, create_key, list_keys, revoke_key
from pipeline.api.migrations import open_pool
from pipeline.api.tenants import TenantError, UnknownTenant, add_tenant, list_tenants
from pipeline.config import Settings, SettingsError, get_settings

console = Console()
err = Console(stderr=True)
T = TypeVar("T")


def _settings() -> Settings:
    try:
        return get_settings()
    except SettingsError as exc:
        err.print(f"[red]{exc}[/red]")
        sys.exit(2)


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
        err.print(f"[red]{exc}[/red]")
        sys.exit(1)
    except TenantError as exc:
        err.print(f"[red]{exc}[/red]")
        sys.exit(2)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        err.print(f"[red]cannot use PostgreSQL at {_where(settings.postgres_dsn)}: {type(exc).__name__}: {exc}[/red]")
        sys.exit(1)


@click.group()
def tenants() -> None:
    """Tenants: who may have API keys (operational database)."""


@tenants.command("add")
@click.argument("name")
def tenants_add(name: str) -> None:
    """Register tenant NAME (idempotent)."""
    created = _run(lambda pool: add_tenant(pool, name))
    err.print(f"tenant {name}: {'added' if created else 'already registered'}")


@tenants.command("list")
def tenants_list() -> None:
    """Every tenant and its count of active keys."""
    table = Table("tenant", "created", "active keys")
    for tenant in _run(list_tenants):
        table.add_row(tenant.name, tenant.created_at.isoformat(timespec="seconds"), str(tenant.keys))
    console.print(table)


@click.group()
def keys() -> None:
    """API keys: create (shown once), list, revoke."""


@keys.command("create")
@click.option("--tenant", required=True, help="A registered tenant (tickwire tenants add NAME).")
@click.option("--scope", type=click.Choice(SCOPES), default="read", show_default=True,
              help="read: every /v1 read of the tenant; admin: read and managing the tenant's keys.")
def keys_create(tenant: str, scope: str) -> None:
    """Create a key; prints it once, on stdout (only a salted hash is stored)."""
    issued = _run(lambda pool: create_key(pool, tenant, scope))
    err.print(f"key {issued.key_id} ({issued.scope}) for tenant {issued.tenant}; it is shown only now, store it safely:")
    click.echo(issued.key)


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke key KEY_ID (the 16 hex digits after tw_); API processes refuse it within seconds."""
    outcome = _run(lambda pool: revoke_key(pool, key_id))
    if outcome == "not found":
        err.print(f"[red]no key {key_id}[/red]")
        sys.exit(1)
    err.print(f"key {key_id}: {outcome}")


@keys.command("list")
@click.option("--tenant", default=None, help="Only this tenant's keys.")
def keys_list(tenant: str | None) -> None:
    """Keys (never their secrets), revoked ones included."""
    table = Table("key id", "tenant", "scope", "created", "revoked")
    for key in _run(lambda pool: list_keys(pool, tenant)):
        revoked = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else ""
        table.add_row(key.key_id, key.tenant, key.scope, key.created_at.isoformat(timespec="seconds"), revoked)
    console.print(table)


@click.command()
def api() -> None:
    """Serve the query API as its own process (any number beside the workers with a ClickHouse server; with chDB
    only while no worker holds the data directory, which it then holds itself: exit 2 if a worker does)."""
    from pipeline.api.server import StandaloneError, check_standalone, serve

    settings = _settings()
    try:
        check_standalone(settings)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        serve(settings)
    except StandaloneError as exc:
        click.echo(f"tickwire api: {exc}", err=True)
        sys.exit(2)
