"""The ceilings: what a bare aiokafka ``getmany`` loop reaches on this machine, with no framework.

- ``decode`` (a): fetch and ``orjson.loads`` every value; nothing is written
  or committed. The most any Python consumer of this topic can do here.
- ``sink`` (b): the same loop, and for each fetched batch (every partition of
  one ``getmany``): one ClickHouse insert of its rows, the newest-wins hot
  keys of its ticks, then a commit of its offsets, in that order and waiting
  for each (at-least-once, like tickwire). The most a consumer that does
  tickwire's work can do without any framework, buffering or concurrency.

The consumer uses the same fetch settings as tickwire's source. Run as
``python -m bench.ceiling decode|sink RECORDS CHDB_DIR`` with ``TICKWIRE_*``
variables (broker, cache, group); prints a :class:`~bench.contender.Measurement`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import orjson
import redis.asyncio
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import OffsetAndMetadata

from bench.contender import Measurement
from bench.sink_work import (
    insert_ticks,
    newest_per_key,
    open_analytics,
    stored_ticks,
    tick_columns,
    write_hot_keys_async,
)
from pipeline.config import Settings, get_settings
from pipeline.contracts.topics import TICKS_TOPIC
from pipeline.core.kafka import client_options


def make_consumer(settings: Settings) -> AIOKafkaConsumer:
    """A consumer with the source's settings (fresh group, manual commits, from the earliest offset)."""
    return AIOKafkaConsumer(
        TICKS_TOPIC,
        **client_options(settings),
        group_id=settings.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=max(settings.session_timeout_ms // 5, 500),
        max_partition_fetch_bytes=4 << 20,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        fetch_max_bytes=64 << 20,
    )


async def run(mode: str, records: int, chdb_dir: Path, settings: Settings) -> Measurement:
    sink = mode == "sink"
    analytics = open_analytics(chdb_dir) if sink else None
    cache = redis.asyncio.Redis.from_url(settings.cache_connection_url) if sink else None
    consumer = make_consumer(settings)
    started = time.perf_counter()
    await consumer.start()
    first = None
    seen = 0
    loads = orjson.loads
    try:
        while seen < records:
            fetched = await consumer.getmany(timeout_ms=settings.fetch_timeout_ms, max_records=settings.fetch_max_records)
            if not fetched:
                continue
            if first is None:
                first = time.perf_counter()
            values, partitions, offsets = [], [], []
            for tp, batch in fetched.items():
                for record in batch:
                    values.append(loads(record.value))
                    partitions.append(tp.partition)
                    offsets.append(record.offset)
            seen += len(values)
            if analytics is not None and cache is not None:
                insert_ticks(analytics, tick_columns(values, partitions, offsets))
                await write_hot_keys_async(cache, newest_per_key(values, offsets))
                await consumer.commit({tp: OffsetAndMetadata(batch[-1].offset + 1, "") for tp, batch in fetched.items()})
        finished = time.perf_counter()
        stored = stored_ticks(analytics) if analytics is not None else 0
    finally:
        await consumer.stop()
        if cache is not None:
            await cache.aclose()
        if analytics is not None:
            analytics.close()
    assert first is not None
    return Measurement(records=seen, join_s=first - started, seconds=finished - first, stored=stored)


def main() -> None:
    mode, records, chdb_dir = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    if mode not in ("decode", "sink"):
        raise SystemExit(f"mode must be decode or sink, not {mode}")
    asyncio.run(run(mode, records, chdb_dir, get_settings())).emit()


if __name__ == "__main__":
    main()
