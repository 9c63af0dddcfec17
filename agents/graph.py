"""Stage ``graph``: ``candles.v1`` → symbol correlation edges; ``signals.enriched.v1`` → strategy→symbol edges.

Both only queue work; the builders (pipeline.derive.correlations,
pipeline.derive.strategy_edges) derive the edges from stored data at the
stage's checkpoint and upsert them into the graph role. A graph store outage
pauses only this stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from pipeline.contracts.schemas import Candle, EnrichedSignal
from pipeline.core.codec import RawRecord
from pipeline.derive.correlations import CorrelationBuilder
from pipeline.derive.strategy_edges import StrategyEdgeBuilder
from pipeline.sinks.base import Sink


@dataclass
class GraphSinks:
    correlations: CorrelationBuilder | None
    strategy_edges: StrategyEdgeBuilder | None

    @property
    def ordered(self) -> list[Sink]:
        return [sink for sink in (self.correlations, self.strategy_edges) if sink is not None]


def bars(messages: Sequence[tuple[RawRecord, Candle]], sinks: GraphSinks) -> None:
    """Closed bars queued for correlations."""
    if sinks.correlations is not None:
        sinks.correlations.add_bars(messages)


def enriched_signals(messages: Sequence[tuple[RawRecord, EnrichedSignal]], sinks: GraphSinks) -> None:
    """Stored signals queued for their strategy edges."""
    if sinks.strategy_edges is not None:
        sinks.strategy_edges.add_signals([(record, enriched.signal) for record, enriched in messages])
