"""Reads of hot keys (``HMGET``) by concurrent requests, coalesced into one cache round trip.

Every request still reads the cache itself, after it arrived: a read waits at
most for the round trip in flight (started before it) to end, then goes out
with every read that arrived meanwhile, in one pipeline (one write, one read
of the replies). Reads of the same key in one round trip share its reply. So
``/v1/ticks/latest`` is as fresh as a read of its own, for a fraction of the
per-request cost of a client round trip each.

A round trip that fails or takes over ``timeout_s`` fails every read in it
with the error.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as redis


class HotKeyReader:
    """``HMGET key *fields`` for many concurrent callers, batched as described in the module docstring."""

    def __init__(self, cache: redis.Redis, timeout_s: float) -> None:
        self._cache = cache
        self._timeout_s = timeout_s
        self._waiting: dict[tuple[str, tuple[str, ...]], list[asyncio.Future[list[bytes | None]]]] = {}
        self._running: asyncio.Task[None] | None = None

    async def read(self, key: str, fields: tuple[str, ...]) -> list[bytes | None]:
        """The values of ``fields`` at ``key`` (None for each missing one), read after this call began."""
        future: asyncio.Future[list[bytes | None]] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault((key, fields), []).append(future)
        if self._running is None:
            self._running = asyncio.create_task(self._round_trips())
        return await future

    async def _round_trips(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, {}
                try:
                    async with asyncio.timeout(self._timeout_s):
                        async with self._cache.pipeline(transaction=False) as pipe:
                            for key, fields in batch:
                                pipe.hmget(key, *fields)
                            replies = await pipe.execute()
                except Exception as exc:  # noqa: BLE001 - every reader gets the failure
                    for futures in batch.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                    continue
                for futures, reply in zip(batch.values(), replies):
                    for future in futures:
                        if not future.done():
                            future.set_result(reply)
        finally:
            self._running = None
