"""Tick agent: decoded ``mt5.ticks.v1`` batches -> ClickHouse ``ticks`` (hot keys: agents.hot_ticks).

Each event is a whole fetched batch of one partition, already decoded by the
source (rejects went to the DLQ there).
"""

from __future__ import annotations

from pipeline.contracts.schemas import Tick
from pipeline.core.batch import RecordBatch
from pipeline.ingest.producer import TICKS_TOPIC
from pipeline.runtime.app import app, sinks, source
from pipeline.runtime.processing import store_ticks


@app.agent(source.route(TICKS_TOPIC, Tick))
async def ticks(batches):  # type: ignore[no-untyped-def]
    async for batch in batches:
        batch: RecordBatch[Tick]
        async with batch.processing():
            store_ticks(batch.messages, sinks)
