"""Tenants: the names that separate data in every store, registered in the operational database.

A tenant must be registered before it can have API keys. Its name follows the
message schemas' tenant pattern (it is the ``tenant`` of the ticks and signals
it owns). Registering is idempotent; tenants are never deleted here (their data
lives on in the other stores).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from pipeline.contracts.schemas import TENANT


class TenantError(ValueError):
    """A bad tenant name."""


class UnknownTenant(TenantError):
    """The tenant is not registered."""


def check_name(name: str) -> str:
    """``name`` if it is a valid tenant name, else :class:`TenantError` saying why."""
    try:
        TENANT.check("tenant", name)
    except ValueError:
        raise TenantError(f"bad tenant name {name!r}: use 1-63 of a-z 0-9 _ -, starting with a letter or digit") from None
    return name


@dataclass(frozen=True)
class Tenant:
    name: str
    created_at: datetime
    keys: int


async def add_tenant(pool: asyncpg.Pool, name: str) -> bool:
    """Register ``name``; True if it is new, False if it was already registered."""
    status = await pool.execute("INSERT INTO tenants (name) VALUES ($1) ON CONFLICT (name) DO NOTHING", check_name(name))
    return status == "INSERT 0 1"


async def tenant_exists(pool: asyncpg.Pool, name: str) -> bool:
    return bool(await pool.fetchval("SELECT 1 FROM tenants WHERE name = $1", name))


async def list_tenants(pool: asyncpg.Pool) -> list[Tenant]:
    """Every tenant with its count of active (unrevoked) keys, by name."""
    rows = await pool.fetch("""
        SELECT t.name, t.created_at, count(k.key_id) FILTER (WHERE k.revoked_at IS NULL) AS keys
        FROM tenants t LEFT JOIN api_keys k ON k.tenant = t.name
        GROUP BY t.name, t.created_at ORDER BY t.name""")
    return [Tenant(row["name"], row["created_at"], row["keys"]) for row in rows]
