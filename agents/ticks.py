"""Tick agent: decoded ``mt5.ticks.v1`` batches -> ClickHouse ``ticks`` + hot keys.

Each event is a whole fetched batch of one partition, already decoded by the
source (rejects went to the DLQ there). ``handle_ticks`` is the processing
itself, shared with replay.
"""

from __future__ import annotations

from typing import Sequence

from pipeline.app import app, sinks, source
from pipeline.batch import RecordBatch
from pipeline.codec import RawRecord
from pipeline.schemas import Tick
from pipeline.sinks.clickhouse import AnalyticsTableSink
from pipeline.sinks.hotcache import HotTickCache, hot_key

TOPIC = "mt5.ticks.v1"


def handle_ticks(messages: Sequence[tuple[RawRecord, Tick]], table: AnalyticsTableSink, hot: HotTickCache) -> None:
    """Buffer ``messages`` as ``ticks`` rows and as hot-key candidates (newest per key wins)."""
    ticks = [tick for _, tick in messages]
    offsets = [record.offset for record, _ in messages]
    times = [int(t.time_msc) for t in ticks]
    volumes = [int(t.volume) for t in ticks]
    flags = [int(t.flags) for t in ticks]
    bids = [t.bid for t in ticks]
    asks = [t.ask for t in ticks]
    lasts = [t.last for t in ticks]
    table.add_columns([
        [t.tenant for t in ticks], [t.broker for t in ticks], [t.symbol for t in ticks], times, bids, asks, lasts,
        volumes, [t.volume_real for t in ticks], flags, [a - b for a, b in zip(asks, bids)],
        [record.partition for record, _ in messages], offsets,
    ])
    for i, t in enumerate(ticks):
        hot.offer(hot_key(t.tenant, t.broker, t.symbol), times[i], offsets[i], bids[i], asks[i], lasts[i], volumes[i], flags[i])


@app.agent(source.route(TOPIC, Tick))
async def ticks(batches):  # type: ignore[no-untyped-def]
    async for batch in batches:
        batch: RecordBatch[Tick]
        async with batch.processing():
            handle_ticks(batch.messages, sinks.ticks, sinks.hot_ticks)
