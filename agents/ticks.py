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
    rows = []
    for record, tick in decoded.valid:
        time_msc, volume, flags = int(tick.time_msc), int(tick.volume), int(tick.flags)
        rows.append((
            tick.tenant, tick.broker, tick.symbol, time_msc, tick.bid, tick.ask, tick.last,
            volume, tick.volume_real, flags, tick.ask - tick.bid, record.partition, record.offset,
        ))
        hot.offer(hot_key(tick.tenant, tick.broker, tick.symbol), time_msc, record.offset,
                  tick.bid, tick.ask, tick.last, volume, flags)
    table.add_rows(rows)
    for rejected in decoded.rejected:
        key, value = dead_letter(rejected)
        await topics.add(DLQ_TOPIC, key, value)
    return len(rows)


@app.agent(source.route(TOPIC))
async def ticks(batches):
    async for batch in batches:
        batch: RecordBatch
        async with batch.processing():
            await handle_ticks(batch.records, sinks.ticks, sinks.hot_ticks, sinks.topics)
