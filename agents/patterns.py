"""Pattern agent: closed bars -> pattern embeddings and forward returns in the vector role.

Receives each checkpoint's bars from the candle builder; the pattern builder
sink (pipeline.derive.patterns) embeds and upserts them in the same checkpoint.
"""

from __future__ import annotations

from pipeline.derive.candles import BarBatch
from pipeline.runtime.app import app, sinks


@app.agent(sinks.candles.bar_channel(app))
async def patterns(handoffs):  # type: ignore[no-untyped-def]
    async for handoff in handoffs:
        handoff: BarBatch
        async with handoff.processing():
            sinks.patterns.add_bars(handoff.bars)
