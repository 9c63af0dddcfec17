"""Answers of ClickHouse reads, kept until the data they were computed from may have changed.

A route declared ``cached`` (``/v1/ticks``, ``/v1/candles``) has its encoded
answer kept under (path, caller's tenant, parsed parameters): a repeat of the
same request by the same tenant is answered from memory. The tenant is part
of the key, so an answer is never served to another tenant; error answers
are never kept. At most ``max_entries`` answers are kept, least recently used
dropped first.

When a kept answer may be served (its *freshness rule*):

- :func:`until_commit` (the API inside a worker whose ClickHouse is chDB:
  that worker is the only process that writes it, and it writes only in its
  checkpoints): an answer is tagged with the worker's checkpoint commit count
  read *before* its query ran, and served only while that count is unchanged.
  The next commit makes every earlier answer stale, so an answer is never
  older than what is committed. (Rows are flushed just before the commit they
  belong to; an answer computed in between is tagged with the older count and
  dropped at that commit.) Before the worker's source has a checkpoint,
  nothing is kept. Writes made outside checkpoints (``tickwire sql --write``)
  are not seen by kept answers until the next commit.
- :func:`for_seconds` (ClickHouse is a server that other workers write:
  ``tickwire api``, or a worker with an ``http(s)://`` DSN): an answer is
  served for at most ``ttl_s`` seconds after its query began
  (:data:`SHARED_STORE_TTL_S`), so it may miss rows committed in that time.

Concurrent requests for the same key at the same data version share one
computation (the first starts it; the others wait for it and count as hits),
so a burst of identical requests runs one query, not one each. The
computation runs as a task of its own: a requester that goes away does not
cancel it for the others.

A request with ``Cache-Control: no-cache`` is always computed (and its answer
kept for the next request): the uncached service time, on demand.

Only a computation queries the store, so only it holds one of the tenant's
query slots (:mod:`pipeline.api.query_slots`, taken by the ``compute`` that
:mod:`pipeline.api.app` passes, or by the batch its read joins:
:mod:`pipeline.api.batched_reads`); a kept answer, or waiting for a running
computation, needs none.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable

#: Seconds an answer is served when ClickHouse may be written by other processes.
SHARED_STORE_TTL_S = 1.0
#: Answers kept at most (per process).
MAX_ENTRIES = 4096

#: The current version of the stored data, or None when answers must not be kept now.
Version = Callable[[], Hashable | None]


class AnswerCache:
    """Encoded answers by key, each served while the data version it was computed at is current and for at most
    ``ttl_s`` seconds (see the module docstring)."""

    def __init__(self, version: Version, ttl_s: float, max_entries: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._version = version
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[Hashable, float, bytes]] = OrderedDict()  # key -> (version, expiry, answer)
        self._running: dict[Hashable, tuple[Hashable, asyncio.Task[bytes]]] = {}  # key -> (version, computation)

    def __len__(self) -> int:
        return len(self._entries)

    async def answer(self, key: Hashable, compute: Callable[[], Awaitable[bytes]], *,
                     refresh: bool = False) -> tuple[bytes, bool]:
        """``(answer, hit)``: the kept answer of ``key`` if still fresh (and not ``refresh``), else ``compute()``'s,
        kept for the next request. Exceptions of ``compute`` propagate and nothing is kept."""
        version = self._version()
        if version is None:
            return await compute(), False
        started = self._clock()
        if not refresh:
            kept = self._entries.get(key)
            if kept is not None and kept[0] == version and started < kept[1]:
                self._entries.move_to_end(key)
                return kept[2], True
            running = self._running.get(key)
            if running is not None and running[0] == version:
                return await asyncio.shield(running[1]), True
        task = asyncio.ensure_future(self._compute(key, version, started, compute))
        task.add_done_callback(_retrieve)
        self._running[key] = (version, task)
        return await asyncio.shield(task), False

    async def _compute(self, key: Hashable, version: Hashable, started: float,
                       compute: Callable[[], Awaitable[bytes]]) -> bytes:
        try:
            computed = await compute()
        finally:
            if self._running.get(key, (None, None))[1] is asyncio.current_task():
                del self._running[key]
        self._entries[key] = (version, started + self._ttl_s, computed)
        self._entries.move_to_end(key)
        if len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return computed


def _retrieve(task: asyncio.Task[bytes]) -> None:
    """Mark a computation's failure as seen (its requesters may all have gone away)."""
    if not task.cancelled():
        task.exception()


def until_commit(commits: Callable[[], int | None], max_entries: int = MAX_ENTRIES) -> AnswerCache:
    """Answers valid until the next checkpoint commit (``commits()``: the count so far, None before the first
    checkpoint exists)."""
    return AnswerCache(commits, math.inf, max_entries)


def for_seconds(ttl_s: float = SHARED_STORE_TTL_S, max_entries: int = MAX_ENTRIES,
                clock: Callable[[], float] = time.monotonic) -> AnswerCache:
    """Answers valid for ``ttl_s`` seconds after their query began."""
    return AnswerCache(lambda: 0, ttl_s, max_entries, clock)
