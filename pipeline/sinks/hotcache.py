"""The hot-key sink: the newest tick per (tenant, broker, symbol) in the cache.

The key layout is a contract: :mod:`pipeline.contracts.cache_keys`.

Hot key ``tw:{tenant}:tick:{broker}:{symbol}`` is a hash with ``bid``, ``ask``,
``last``, ``volume``, ``flags``, ``time_msc`` and ``offset`` (the source offset).
A write replaces it only when the incoming tick is newer: a greater
``time_msc``, or the same ``time_msc`` and a greater source offset. The compare
and the write are one Lua script, so concurrent writers and redelivered or
out-of-order ticks can never move a key backwards. Every write refreshes the
TTL. The sink is eager (flushed after every fetched batch) for freshness, and
may be offered ticks while it flushes: a flush writes what was buffered when
it took the buffer, flushes run one at a time (so a checkpoint's flush also
waits for an eager one in flight), and a failed flush puts its ticks back
(newest still wins) for the next one. A key whose write the cache refuses
(a permanent error) is dead-lettered with its tick's record.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as redis

from pipeline.core.codec import RawRecord
from pipeline.core.isolation import Refusal, isolate, refusals
from pipeline.sinks.base import Sink

NEWEST_WINS = """
local ttl = tonumber(ARGV[1])
local written = 0
for i, key in ipairs(KEYS) do
  local at = 2 + (i - 1) * 7
  local t = tonumber(ARGV[at])
  local off = tonumber(ARGV[at + 1])
  local cur = redis.call('HMGET', key, 'time_msc', 'offset')
  local ct = tonumber(cur[1])
  if (not ct) or t > ct or (t == ct and off > (tonumber(cur[2]) or -1)) then
    redis.call('HSET', key, 'time_msc', ARGV[at], 'offset', ARGV[at + 1], 'bid', ARGV[at + 2],
               'ask', ARGV[at + 3], 'last', ARGV[at + 4], 'volume', ARGV[at + 5], 'flags', ARGV[at + 6])
    written = written + 1
  end
  redis.call('PEXPIRE', key, ttl)
end
return written
"""

KEYS_PER_CALL = 500


_Entry = tuple[int, int, float, float, float, int, int]  # time_msc, offset, bid, ask, last, volume, flags


class HotTickCache(Sink):
    eager = True

    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self._client = client
        self._ttl_ms = ttl_s * 1000
        self._script = client.register_script(NEWEST_WINS)
        # key -> (values, the record they came from); newest per key only
        self._newest: dict[str, tuple[_Entry, RawRecord | None]] = {}
        self._flushing = asyncio.Lock()

    @property
    def name(self) -> str:
        return "cache.hot_ticks"

    @property
    def pending(self) -> int:
        return len(self._newest)

    def offer(self, key: str, time_msc: int, offset: int, bid: float, ask: float, last: float, volume: int, flags: int,
              origin: RawRecord | None = None) -> None:
        """Buffer a tick for ``key`` unless a newer one is already buffered."""
        self._keep(key, (time_msc, offset, bid, ask, last, volume, flags), origin)

    def _keep(self, key: str, values: _Entry, origin: RawRecord | None) -> None:
        current = self._newest.get(key)
        if current is None or values[0] > current[0][0] or (values[0] == current[0][0] and values[1] > current[0][1]):
            self._newest[key] = (values, origin)

    async def flush(self) -> None:
        await self._flush(isolating=False)

    async def flush_isolating(self) -> list[Refusal]:
        return await self._flush(isolating=True)

    async def _flush(self, *, isolating: bool) -> list[Refusal]:
        async with self._flushing:
            if not self._newest:
                return []
            taken, self._newest = self._newest, {}
            items = list(taken.items())
            try:
                if not isolating:
                    await self._write(items)
                    return []
                refused = await isolate(len(items), lambda lo, hi: self._write(items[lo:hi]))
            except BaseException:
                for key, (values, origin) in items:
                    self._keep(key, values, origin)
                raise
            return refusals(self.name, refused, lambda index: items[index][1][1])

    async def _write(self, items: list[tuple[str, tuple[_Entry, RawRecord | None]]]) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for start in range(0, len(items), KEYS_PER_CALL):
                chunk = items[start:start + KEYS_PER_CALL]
                args: list[Any] = [self._ttl_ms]
                for _key, (values, _origin) in chunk:
                    args.extend(repr(v) if isinstance(v, float) else v for v in values)
                await self._script(keys=[k for k, _ in chunk], args=args, client=pipe)
            await pipe.execute()
