"""Signal agent: decoded ``mt5.signals.v1`` batches -> ClickHouse ``signals`` + enrichment.

Rows go to ``tickwire.signals`` (one row per (tenant, id)); the enricher sink
publishes each signal once to ``signals.enriched.v1`` with the cached market
and similar past patterns (see pipeline.signal_enricher).
"""

from __future__ import annotations

from typing import Sequence

from pipeline.app import app, sinks, source
from pipeline.batch import RecordBatch
from pipeline.codec import RawRecord
from pipeline.schemas import Signal
from pipeline.signal_enricher import SignalEnricher
from pipeline.sinks.clickhouse import AnalyticsTableSink

TOPIC = "mt5.signals.v1"


def handle_signals(messages: Sequence[tuple[RawRecord, Signal]], table: AnalyticsTableSink, enricher: SignalEnricher) -> None:
    signals = [signal for _, signal in messages]
    table.add_columns([
        [s.tenant for s in signals], [s.id for s in signals], [s.broker for s in signals], [s.strategy for s in signals],
        [s.symbol for s in signals], [int(s.time_msc) for s in signals], [s.action for s in signals],
        [s.confidence for s in signals], [s.price for s in signals], [s.sl for s in signals], [s.tp for s in signals],
        [s.reason for s in signals], [r.partition for r, _ in messages], [r.offset for r, _ in messages],
    ])
    enricher.add_signals(signals)


@app.agent(source.route(TOPIC, Signal))
async def signals(batches):  # type: ignore[no-untyped-def]
    async for batch in batches:
        batch: RecordBatch[Signal]
        async with batch.processing():
            handle_signals(batch.messages, sinks.signals, sinks.enricher)
