"""Candle agent: decoded tick batches -> which bars closed or were amended.

The bars themselves are computed from the stored ticks by the candle builder
sink at the next checkpoint (see pipeline.derive.candles), then stored in
ClickHouse ``candles``, published to ``candles.v1`` and handed to the pattern
and correlation agents.
"""

from __future__ import annotations

from pipeline.contracts.schemas import Tick
from pipeline.core.batch import RecordBatch
from pipeline.ingest.producer import TICKS_TOPIC
from pipeline.runtime.app import app, sinks, source
from pipeline.runtime.processing import track_bars


@app.agent(source.route(TICKS_TOPIC, Tick))
async def candles(batches):  # type: ignore[no-untyped-def]
    async for batch in batches:
        batch: RecordBatch[Tick]
        async with batch.processing():
            track_bars(batch.messages, sinks)
