"""Concurrent store reads of one kind by one tenant, coalesced into one store query per batch.

A chDB query has a fixed cost of a few milliseconds whatever it reads (a
MergeTree read of 100 rows costs about as much as one of 1,600), so sixteen
clients asking for sixteen symbols' pages cost sixteen times that when each
runs its own query, and about one and a half times when one query answers all
sixteen (``symbol IN (...)`` with ``LIMIT ... BY symbol``).

Contract of :meth:`BatchedReads.read` (``fetch``, ``tenant``, ``group``, ``item``):

- The answer for ``item`` is computed by ``fetch(group, items)`` in a batch that
  started **after this call began**: as fresh as a query of its own. A read
  waits at most for the batch of its (``fetch``, ``tenant``, ``group``) in
  flight to end, then goes out with every read of that group that arrived
  meanwhile. Reads of the same item in one batch share its answer.
- One batch per group at a time; batches of different groups (another kind of
  read, other parameters, another tenant) run concurrently.
- Every batch runs in one of ``tenant``'s query slots
  (:mod:`pipeline.api.query_slots`): a tenant runs at most
  ``TICKWIRE_API_TENANT_QUERIES`` store queries at once however many of its
  requests they answer, and other tenants never wait for its slots. A batch
  that gets no slot within the slots' wait fails every read in it with that
  429; a batch whose ``fetch`` raises fails every read in it with the error.
- ``fetch`` must answer every item it is given, and only from ``tenant``'s
  data: the group is always built with the caller's tenant.
- A reader that goes away (its request cancelled) leaves; the batch goes on
  for the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, TypeVar

from pipeline.api.query_slots import TenantQuerySlots

G = TypeVar("G", bound=Hashable)
I = TypeVar("I", bound=Hashable)
R = TypeVar("R")

#: Answers the items of one batch of a group: a result for each item.
Fetch = Callable[[G, Sequence[I]], Awaitable[dict[I, R]]]

_Key = tuple[Any, str, Hashable]


class BatchedReads:
    """Reads coalesced per (fetch, tenant, group), each batch in one of the tenant's query slots."""

    def __init__(self, slots: TenantQuerySlots) -> None:
        self._slots = slots
        self._waiting: dict[_Key, dict[Hashable, list[asyncio.Future[Any]]]] = {}
        self._running: dict[_Key, asyncio.Task[None]] = {}

    async def read(self, fetch: Fetch[G, I, R], tenant: str, group: G, item: I) -> R:
        """``item``'s answer from a batch of ``fetch`` over ``group`` begun after this call (see the module docstring)."""
        key: _Key = (fetch, tenant, group)
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, {}).setdefault(item, []).append(future)
        if key not in self._running:
            self._running[key] = asyncio.create_task(self._batches(key))
        return await future

    async def _batches(self, key: _Key) -> None:
        fetch, tenant, group = key
        try:
            while (batch := self._waiting.pop(key, None)) is not None:
                try:
                    async with self._slots.slot(tenant):
                        answers = await fetch(group, list(batch))
                    results = [(futures, answers[item]) for item, futures in batch.items()]
                except Exception as exc:  # noqa: BLE001 - every reader of the batch gets the failure
                    for futures in batch.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                    continue
                for futures, result in results:
                    for future in futures:
                        if not future.done():
                            future.set_result(result)
        finally:
            del self._running[key]
