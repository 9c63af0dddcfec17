"""API keys: their format, how they are stored (salted hashes only), issued, listed and revoked.

Format: ``tw_<key id>_<secret>`` — ``tw_``, a key id of 16 hex digits (public:
it names the key in listings and revocation), ``_``, and a secret of 43
URL-safe base64 characters (32 random bytes). Example shape:
``tw_3f9a0c1be27d4a15_Yc1...``. The whole key is shown once, when it is
created; it cannot be recovered.

Storage (table ``api_keys``): key id, tenant, scope, a random 16-byte salt
and ``HMAC-SHA256(salt, secret)``. The secret is 256 random bits, so a fast
keyed hash is as safe as a slow KDF (nothing to brute-force) and keeps a cold
key check well under a millisecond. A check recomputes the hash and compares
in constant time (:func:`secret_matches`).

Scopes: ``read`` (every ``/v1`` read of the key's tenant) and ``admin``
(read, plus managing the tenant's own keys: ``/v1/keys``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, cast, get_args

import asyncpg

from pipeline.api.tenants import UnknownTenant, check_name
from pipeline.contracts.schemas import NamePattern

Scope = Literal["read", "admin"]
SCOPES: tuple[str, ...] = get_args(Scope)
PREFIX = "tw_"
#: A key id, as it appears in paths and listings.
KEY_ID = NamePattern(r"^[0-9a-f]{16}")
_KEY = re.compile(r"tw_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_SALT_BYTES = 16


@dataclass(frozen=True)
class IssuedKey:
    """A key just created: ``key`` is the only copy of the secret."""

    key_id: str
    tenant: str
    scope: Scope
    key: str


@dataclass(frozen=True)
class StoredKey:
    """What the database holds about a key: enough to check one, never enough to recreate it."""

    key_id: str
    tenant: str
    scope: Scope
    salt: bytes
    secret_hash: bytes
    revoked: bool


@dataclass(frozen=True)
class KeyInfo:
    """A key as listed: no secret, no hash."""

    key_id: str
    tenant: str
    scope: Scope
    created_at: datetime
    revoked_at: datetime | None


RevokeOutcome = Literal["revoked", "already revoked", "not found"]


def split_key(key: str) -> tuple[str, str] | None:
    """``(key id, secret)`` of a well-formed key, else None."""
    match = _KEY.fullmatch(key)
    return (match.group(1), match.group(2)) if match else None


def hash_secret(salt: bytes, secret: str) -> bytes:
    return hmac.new(salt, secret.encode("ascii"), hashlib.sha256).digest()


def secret_matches(stored: StoredKey, secret: str) -> bool:
    """Whether ``secret`` is the stored key's secret (constant-time compare)."""
    return hmac.compare_digest(hash_secret(stored.salt, secret), stored.secret_hash)


def check_scope(scope: str) -> Scope:
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    return cast(Scope, scope)


async def create_key(pool: asyncpg.Pool, tenant: str, scope: str) -> IssuedKey:
    """Issue a key of ``scope`` for the registered ``tenant``; raises :class:`UnknownTenant` if it is not registered."""
    check_name(tenant)
    checked = check_scope(scope)
    key_id, secret, salt = secrets.token_hex(8), secrets.token_urlsafe(32), secrets.token_bytes(_SALT_BYTES)
    try:
        await pool.execute(
            "INSERT INTO api_keys (key_id, tenant, scope, salt, secret_hash) VALUES ($1, $2, $3, $4, $5)",
            key_id, tenant, checked, salt, hash_secret(salt, secret))
    except asyncpg.ForeignKeyViolationError:
        raise UnknownTenant(f"no tenant {tenant!r}: add it first (tickwire tenants add {tenant})") from None
    return IssuedKey(key_id, tenant, checked, f"{PREFIX}{key_id}_{secret}")


async def load_key(pool: asyncpg.Pool, key_id: str) -> StoredKey | None:
    row = await pool.fetchrow(
        "SELECT key_id, tenant, scope, salt, secret_hash, revoked_at IS NOT NULL AS revoked FROM api_keys WHERE key_id = $1",
        key_id)
    if row is None:
        return None
    return StoredKey(row["key_id"], row["tenant"], row["scope"], bytes(row["salt"]), bytes(row["secret_hash"]),
                     row["revoked"])


async def revoke_key(pool: asyncpg.Pool, key_id: str, *, tenant: str | None = None) -> RevokeOutcome:
    """Revoke a key (only within ``tenant`` when given). Idempotent."""
    row = await pool.fetchrow("""
        WITH target AS (SELECT key_id, revoked_at FROM api_keys WHERE key_id = $1 AND ($2::text IS NULL OR tenant = $2)),
             done AS (UPDATE api_keys k SET revoked_at = now() FROM target t
                      WHERE k.key_id = t.key_id AND t.revoked_at IS NULL RETURNING k.key_id)
        SELECT (SELECT count(*) FROM target) AS found, (SELECT count(*) FROM done) AS revoked""", key_id, tenant)
    assert row is not None  # a SELECT without FROM returns one row
    if not row["found"]:
        return "not found"
    return "revoked" if row["revoked"] else "already revoked"


async def list_keys(pool: asyncpg.Pool, tenant: str | None = None) -> list[KeyInfo]:
    """Keys (of ``tenant`` when given), oldest first, revoked ones included."""
    rows = await pool.fetch("""
        SELECT key_id, tenant, scope, created_at, revoked_at FROM api_keys
        WHERE $1::text IS NULL OR tenant = $1 ORDER BY created_at, key_id""", tenant)
    return [KeyInfo(row["key_id"], row["tenant"], row["scope"], row["created_at"], row["revoked_at"]) for row in rows]
