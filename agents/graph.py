"""Graph agents: closed bars -> symbol correlation edges; signals -> strategy→symbol edges.

Both only queue work; the builders (pipeline.derive.correlations,
pipeline.derive.strategy_edges) derive the edges from stored data at the checkpoint
and upsert them into the graph role.
"""

from __future__ import annotations

from pipeline.contracts.schemas import Signal
from pipeline.core.batch import RecordBatch
from pipeline.derive.candles import BarBatch
from pipeline.ingest.producer import SIGNALS_TOPIC
from pipeline.runtime.app import app, sinks, source
from pipeline.runtime.processing import queue_strategy_edges


@app.agent(sinks.candles.bar_channel(app))
async def correlations(handoffs):  # type: ignore[no-untyped-def]
    async for handoff in handoffs:
        handoff: BarBatch
        async with handoff.processing():
            sinks.correlations.add_bars(handoff.bars)


@app.agent(source.route(SIGNALS_TOPIC, Signal))
async def strategy_edges(batches):  # type: ignore[no-untyped-def]
    async for batch in batches:
        batch: RecordBatch[Signal]
        async with batch.processing():
            queue_strategy_edges(batch.messages, sinks)
