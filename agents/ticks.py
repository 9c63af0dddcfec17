"""Tick agent: ``mt5.ticks.v1`` -> ClickHouse ``ticks`` + hot keys; rejects -> DLQ.

Each event is a whole fetched batch of one partition (see pipeline.source).
``handle_ticks`` is the processing itself, shared with replay.
"""

from __future__ import annotations

from pipeline.app import app, settings, sinks, source
from pipeline.batch import RecordBatch
from pipeline.codec import BatchDecoder, RawRecord
from pipeline.dlq import DLQ_TOPIC, dead_letter
from pipeline.schemas import Tick
from pipeline.sinks.clickhouse import AnalyticsTableSink
from pipeline.sinks.hotcache import HotTickCache, hot_key
from pipeline.sinks.topic import TopicPublisher

TOPIC = "mt5.ticks.v1"
decoder = BatchDecoder(Tick, settings.max_record_bytes)


async def handle_ticks(
    records: list[RawRecord], table: AnalyticsTableSink, hot: HotTickCache, topics: TopicPublisher
) -> int:
    """Decode ``records``; valid ticks to ``table`` and ``hot``, the rest to the DLQ. Returns valid count."""
    decoded = decoder.decode(records)
    ticks = [tick for _, tick in decoded.valid]
    offsets = [record.offset for record, _ in decoded.valid]
    times = [int(t.time_msc) for t in ticks]
    volumes = [int(t.volume) for t in ticks]
    flags = [int(t.flags) for t in ticks]
    bids = [t.bid for t in ticks]
    asks = [t.ask for t in ticks]
    lasts = [t.last for t in ticks]
    table.add_columns([
        [t.tenant for t in ticks], [t.broker for t in ticks], [t.symbol for t in ticks], times, bids, asks, lasts,
        volumes, [t.volume_real for t in ticks], flags, [a - b for a, b in zip(asks, bids)],
        [record.partition for record, _ in decoded.valid], offsets,
    ])
    for i, t in enumerate(ticks):
        hot.offer(hot_key(t.tenant, t.broker, t.symbol), times[i], offsets[i], bids[i], asks[i], lasts[i], volumes[i], flags[i])
    for rejected in decoded.rejected:
        key, value = dead_letter(rejected)
        await topics.add(DLQ_TOPIC, key, value)
    return len(ticks)


@app.agent(source.route(TOPIC))
async def ticks(batches):
    async for batch in batches:
        batch: RecordBatch
        async with batch.processing():
            await handle_ticks(batch.records, sinks.ticks, sinks.hot_ticks, sinks.topics)
