"""Who is calling: a bearer API key, checked against the operational database, is a :class:`Principal`.

Contracts:
- Every ``/v1`` request carries ``Authorization: Bearer <key>``; a missing,
  malformed, unknown, revoked or wrong key is a 401 (the answer does not say
  which). The key's tenant is the only tenant the request can read.
- A key's stored record (salted hash, scope, revoked flag) is cached in
  memory for :data:`KEY_CACHE_TTL_S` seconds, so a request with a known key
  costs no database round trip; with it, the last secret that matched the
  record's hash, so a repeat of that key costs one constant-time comparison
  (not even an HMAC). Consequence: a key
  revoked from another process (``tickwire keys revoke``, another API process)
  stops working within :data:`KEY_CACHE_TTL_S` seconds; one revoked through
  this process's ``DELETE /v1/keys/{key_id}`` stops at once here.
- ``admin`` keys may do everything ``read`` keys may, and manage their own
  tenant's keys.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from pipeline.api.errors import unauthorized
from pipeline.api.keys import Scope, StoredKey, load_key, secret_matches, split_key

#: Seconds a key's stored record is trusted without asking the database again (revocation delay).
KEY_CACHE_TTL_S = 5.0
#: Cached key records kept at most (the cache is emptied when full).
MAX_CACHED_KEYS = 10_000


@dataclass(frozen=True)
class Principal:
    """The caller: the tenant and scope of the key it presented."""

    tenant: str
    scope: Scope
    key_id: str

    def allows(self, needed: Scope) -> bool:
        return needed == "read" or self.scope == "admin"


class Authenticator:
    """Maps ``Authorization`` headers to principals, with the short-lived cache described above."""

    def __init__(self, pool: asyncpg.Pool, *, ttl_s: float = KEY_CACHE_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._pool = pool
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, StoredKey | None]] = {}
        #: key id -> (expiry, its principal, the secret that last matched its stored hash)
        self._verified: dict[str, tuple[float, Principal, str]] = {}

    def known(self, header: str | None) -> Principal | None:
        """The principal of a key verified within the cache's lifetime and presented again, byte for byte;
        None for anything else (then :meth:`authenticate` decides)."""
        if not header or not header.startswith("Bearer "):
            return None
        parts = split_key(header[7:])
        if parts is None:
            return None
        verified = self._verified.get(parts[0])
        if verified is None or verified[0] <= self._clock() or not hmac.compare_digest(verified[2], parts[1]):
            return None
        return verified[1]

    async def authenticate(self, header: str | None) -> Principal:
        """The principal of a valid, unrevoked key; raises a 401 ApiError otherwise.

        Database errors propagate (the caller reports PostgreSQL as unavailable).
        """
        if not header:
            raise unauthorized("an API key is required: Authorization: Bearer <key>")
        scheme, _, key = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise unauthorized("use Authorization: Bearer <key>")
        parts = split_key(key.strip())
        if parts is None:
            raise unauthorized("invalid API key")
        key_id, secret = parts
        expiry, stored = await self._stored(key_id)
        if stored is None or stored.revoked or not secret_matches(stored, secret):
            raise unauthorized("invalid API key")
        principal = Principal(stored.tenant, stored.scope, stored.key_id)
        if len(self._verified) >= MAX_CACHED_KEYS:
            self._verified.clear()
        self._verified[key_id] = (expiry, principal, secret)
        return principal

    def forget(self, key_id: str) -> None:
        """Drop a key's cached record (after revoking it here), so the next request re-reads it."""
        self._cache.pop(key_id, None)
        self._verified.pop(key_id, None)

    async def _stored(self, key_id: str) -> tuple[float, StoredKey | None]:
        """``(expiry, record)`` of ``key_id``, from the cache while fresh, else loaded and cached."""
        now = self._clock()
        cached = self._cache.get(key_id)
        if cached is not None and cached[0] > now:
            return cached
        stored = await load_key(self._pool, key_id)
        if len(self._cache) >= MAX_CACHED_KEYS:
            self._cache.clear()
        self._cache[key_id] = entry = (now + self._ttl_s, stored)
        return entry
