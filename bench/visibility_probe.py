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

import orjson
import redis.asyncio

from bench.data import BROKER
from pipeline.config import Settings, get_settings
from pipeline.sinks.hotcache import hot_key
from pipeline.sql_client import worker_query

HOT_PROBE_MS = 5
CH_PROBE_MS = 100


def stored_offsets_sql(tenant: str) -> str:
    """The highest stored source offset per partition of ``tenant``'s ticks."""
    return (f"SELECT src_partition AS p, max(src_offset) AS o FROM tickwire.ticks "
            f"WHERE tenant = '{tenant}' GROUP BY src_partition")


def _now_us() -> int:
    return time.time_ns() // 1_000


async def probe_hot_keys(settings: Settings, keys: list[str], stop: asyncio.Event, seen: list[list[int]]) -> None:
    cache = redis.asyncio.Redis.from_url(settings.cache_url)
    last = [0] * len(keys)
    try:
        while not stop.is_set():
            started = time.monotonic()
            async with cache.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hget(key, "volume")
                values = await pipe.execute()
            now = _now_us()
            for i, value in enumerate(values):
                if value is not None and int(value) > last[i]:
                    last[i] = int(value)
                    seen.append([i, last[i], now])
            await asyncio.sleep(max(0.0, HOT_PROBE_MS / 1000 - (time.monotonic() - started)))
    finally:
        await cache.aclose()


async def probe_clickhouse(settings: Settings, tenant: str, stop: asyncio.Event, seen: list[list[int]]) -> None:
    sql = stored_offsets_sql(tenant)
    last: dict[int, int] = {}
    while not stop.is_set():
        started = time.monotonic()
        lines = await asyncio.to_thread(worker_query, settings, sql) or []
        now = _now_us()
        for row in map(orjson.loads, lines):
            partition, offset = int(row["p"]), int(row["o"])
            if offset > last.get(partition, -1):
                last[partition] = offset
                seen.append([partition, offset, now])
        await asyncio.sleep(max(0.0, CH_PROBE_MS / 1000 - (time.monotonic() - started)))


async def run(tenant: str, symbols: list[str]) -> dict[str, list[list[int]]]:
    settings = get_settings()
    stop = asyncio.Event()
    hot: list[list[int]] = []
    clickhouse: list[list[int]] = []
    keys = [hot_key(tenant, BROKER, symbol) for symbol in symbols]
    probes = [asyncio.create_task(probe_hot_keys(settings, keys, stop, hot)),
              asyncio.create_task(probe_clickhouse(settings, tenant, stop, clickhouse))]
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    stop.set()
    await asyncio.gather(*probes)
    return {"hot_key": hot, "clickhouse": clickhouse}


def main() -> None:
    print(json.dumps(asyncio.run(run(sys.argv[1], sys.argv[2].split(",")))), flush=True)


if __name__ == "__main__":
    main()
