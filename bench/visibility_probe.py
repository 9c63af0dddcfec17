"""What a reader sees, and when: the visibility prober of the latency run, in a process of its own.

Runs beside the worker and the bench's producer (:mod:`bench.latency`), so
that the time a change is seen is taken by an otherwise idle event loop, not
by the producer's (which is busy sending 10k ticks/s). Two loops:

- hot keys: every ``HOT_PROBE_MS`` one pipelined ``HGET volume`` of every hot
  key (the producer stamps each tick's send time, µs, in ``volume``);
- ClickHouse: every ``CH_PROBE_MS`` the highest stored source offset per
  partition of the tenant, through the worker's ``/internal/sql`` route.

It reports only changes: ``[key index, stamp seen, seen at µs]`` and
``[partition, offset seen, seen at µs]``; the bench turns them into
per-tick latencies. Run as ``python -m bench.visibility_probe TENANT SYMBOLS``
(comma-separated) with ``TICKWIRE_*`` variables: prints ``ready``, probes
until a line arrives on stdin, then prints one JSON line of observations.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable

import orjson
import redis.asyncio

from bench.data import BROKER
from pipeline.config import Settings, get_settings
from pipeline.contracts.cache_keys import hot_key
from pipeline.ops.sql_client import worker_query

HOT_PROBE_MS = 5
CH_PROBE_MS = 100


def stored_offsets_sql(tenant: str) -> str:
    """The highest stored source offset per partition of ``tenant``'s ticks."""
    return (f"SELECT src_partition AS p, max(src_offset) AS o FROM tickwire.ticks "
            f"WHERE tenant = '{tenant}' GROUP BY src_partition")


def _now_us() -> int:
    return time.time_ns() // 1_000


class Prober:
    """Both probes, each recording the changes it sees (``[index, value, seen at µs]``)."""

    def __init__(self, settings: Settings, tenant: str, symbols: list[str]) -> None:
        self.settings = settings
        self.keys = [hot_key(tenant, BROKER, symbol) for symbol in symbols]
        self.offsets_sql = stored_offsets_sql(tenant)
        self.cache = redis.asyncio.Redis.from_url(settings.cache_connection_url)
        self.hot: list[list[int]] = []
        self.clickhouse: list[list[int]] = []
        self._stamps = [0] * len(self.keys)
        self._offsets: dict[int, int] = {}

    async def hot_keys_once(self) -> None:
        async with self.cache.pipeline(transaction=False) as pipe:
            for key in self.keys:
                pipe.hget(key, "volume")
            values = await pipe.execute()
        now = _now_us()
        for i, value in enumerate(values):
            if value is not None and int(value) > self._stamps[i]:
                self._stamps[i] = int(value)
                self.hot.append([i, self._stamps[i], now])

    async def clickhouse_once(self) -> None:
        lines = await asyncio.to_thread(worker_query, self.settings, self.offsets_sql) or []
        now = _now_us()
        for row in map(orjson.loads, lines):
            partition, offset = int(row["p"]), int(row["o"])
            if offset > self._offsets.get(partition, -1):
                self._offsets[partition] = offset
                self.clickhouse.append([partition, offset, now])


async def every(period_ms: int, probe: Callable[[], Awaitable[None]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        started = time.monotonic()
        await probe()
        await asyncio.sleep(max(0.0, period_ms / 1000 - (time.monotonic() - started)))


async def run(tenant: str, symbols: list[str]) -> dict[str, list[list[int]]]:
    prober = Prober(get_settings(), tenant, symbols)
    stop = asyncio.Event()
    loops = [asyncio.create_task(every(HOT_PROBE_MS, prober.hot_keys_once, stop)),
             asyncio.create_task(every(CH_PROBE_MS, prober.clickhouse_once, stop))]
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    stop.set()
    await asyncio.gather(*loops)
    # the bench stops the prober once it saw everything visible itself: one last look at both
    await prober.hot_keys_once()
    await prober.clickhouse_once()
    await prober.cache.aclose()
    return {"hot_key": prober.hot, "clickhouse": prober.clickhouse}


def main() -> None:
    print(json.dumps(asyncio.run(run(sys.argv[1], sys.argv[2].split(",")))), flush=True)


if __name__ == "__main__":
    main()
