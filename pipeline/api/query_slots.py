"""Store queries per tenant: at most N of one tenant's requests query the stores at once; the others wait their turn.

The stores (ClickHouse read sessions, vector and graph stores) are shared by
every tenant. Without a cap, one tenant's burst of expensive uncached requests
would hold every read session and queue everyone else's queries behind its own.

Contract:

- A request holds one of its tenant's ``per_tenant`` slots
  (``TICKWIRE_API_TENANT_QUERIES``) while its handler queries the stores
  (``async with slots.slot(tenant)``). A request answered from the answer cache
  (:mod:`pipeline.api.answer_cache`: a kept answer, or one being computed for
  another request) needs no slot; a ``Cache-Control: no-cache`` request
  computes, so it does. Parsing and authentication happen before, so an invalid
  request never waits for or holds a slot.
- Slots are handed out in arrival order. A request waits for one at most
  ``wait_s`` seconds (``TICKWIRE_API_QUERY_TIMEOUT_S``, the time one query may
  take, so a slot normally frees well within it); then it is refused with 429,
  ``Retry-After: 1``. Other tenants' requests never wait for this tenant's slots.
- A waiter that goes away (its client disconnected) leaves the queue; a slot
  handed to it at that moment passes to the next one.
- In memory, per process. A tenant with no query running or waiting has no
  entry, so memory follows the requests in flight, not the number of tenants.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from pipeline.api.errors import too_many_requests


@dataclass
class _Tenant:
    running: int = 0
    waiting: deque[asyncio.Future[None]] = field(default_factory=deque)


class TenantQuerySlots:
    """``per_tenant`` slots for each tenant, waited for at most ``wait_s`` seconds (see the module docstring)."""

    def __init__(self, per_tenant: int, wait_s: float) -> None:
        if per_tenant < 1 or wait_s <= 0:
            raise ValueError("per_tenant must be >= 1 and wait_s > 0")
        self._per_tenant = per_tenant
        self._wait_s = wait_s
        self._tenants: dict[str, _Tenant] = {}

    def running(self, tenant: str) -> int:
        """Slots of ``tenant`` held now."""
        state = self._tenants.get(tenant)
        return 0 if state is None else state.running

    def waiting(self, tenant: str) -> int:
        """Requests of ``tenant`` waiting for a slot now."""
        state = self._tenants.get(tenant)
        return 0 if state is None else sum(not waiter.done() for waiter in state.waiting)

    @asynccontextmanager
    async def slot(self, tenant: str) -> AsyncIterator[None]:
        """Hold one of ``tenant``'s slots for the block; raises the 429 ApiError if none frees within ``wait_s``."""
        await self._acquire(tenant)
        try:
            yield
        finally:
            self._release(tenant)

    async def _acquire(self, tenant: str) -> None:
        state = self._tenants.get(tenant)
        if state is None:
            state = self._tenants[tenant] = _Tenant()
        if state.running < self._per_tenant and not state.waiting:
            state.running += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        state.waiting.append(waiter)
        try:
            async with asyncio.timeout(self._wait_s):
                await waiter  # resolved by _release, which hands its slot over (running stays counted)
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._release(tenant)  # the slot came as this request gave up: pass it on
            else:
                waiter.cancel()
                try:
                    state.waiting.remove(waiter)
                except ValueError:
                    pass
                self._forget_if_idle(tenant, state)
            if isinstance(exc, TimeoutError):
                raise too_many_requests(
                    f"too many concurrent queries for this key's tenant (at most {self._per_tenant} at once); "
                    "retry shortly", 1.0) from None
            raise

    def _release(self, tenant: str) -> None:
        state = self._tenants[tenant]
        while state.waiting:
            waiter = state.waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        state.running -= 1
        self._forget_if_idle(tenant, state)

    def _forget_if_idle(self, tenant: str, state: _Tenant) -> None:
        if state.running == 0 and not state.waiting and self._tenants.get(tenant) is state:
            del self._tenants[tenant]
