"""Signal agent: decoded ``mt5.signals.v1`` batches -> ClickHouse ``signals`` + enrichment.

Rows go to ``tickwire.signals`` (one row per (tenant, id)); the enricher sink
publishes each signal once to ``signals.enriched.v1`` with the cached market
and similar past patterns (see pipeline.derive.enrichment).
"""

from __future__ import annotations

from pipeline.contracts.schemas import Signal
from pipeline.core.batch import RecordBatch
from pipeline.ingest.producer import SIGNALS_TOPIC
from pipeline.runtime.app import app, sinks, source
from pipeline.runtime.processing import store_signals


@app.agent(source.route(SIGNALS_TOPIC, Signal))
async def signals(batches):  # type: ignore[no-untyped-def]
    async for batch in batches:
        batch: RecordBatch[Signal]
        async with batch.processing():
            store_signals(batch.messages, sinks)
