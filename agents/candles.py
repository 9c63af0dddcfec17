"""Candle agent: decoded tick batches -> which bars closed or were amended.

The bars themselves are computed from the stored ticks by the candle builder
sink at the next checkpoint (see pipeline.candle_builder), then stored in
ClickHouse ``candles``, published to ``candles.v1`` and handed to patterns
and correlations.
"""

from __future__ import annotations

from typing import Sequence

from pipeline.app import app, settings, sinks, source
from pipeline.bar_clock import BarClock, ClockEvents
from pipeline.batch import RecordBatch
from pipeline.candle_builder import CandleBuilder
from pipeline.codec import RawRecord
from pipeline.metrics import LATE_TICKS
from pipeline.schemas import Tick

clock = BarClock(settings.timeframes, settings.candle_lateness_ms)


def track_bars(messages: Sequence[tuple[RawRecord, Tick]], bar_clock: BarClock, builder: CandleBuilder) -> None:
    """Advance the clock over ``messages``; queue the bars they close or amend."""
    events = ClockEvents()
    for _, tick in messages:
        bar_clock.observe((tick.tenant, tick.broker, tick.symbol), int(tick.time_msc), events)
    builder.add(events.closed)
    builder.add(events.amended)
    for (timeframe, outcome), count in events.late.items():
        LATE_TICKS.labels(timeframe, outcome).inc(count)


@app.agent(source.route("mt5.ticks.v1", Tick))
async def candles(batches):  # type: ignore[no-untyped-def]
    async for batch in batches:
        batch: RecordBatch[Tick]
        async with batch.processing():
            track_bars(batch.messages, clock, sinks.candles)
