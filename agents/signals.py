"""Stage ``signals``: ``mt5.signals.v1`` → ClickHouse ``signals``, enrichment → ``signals.enriched.v1``.

Rows go to ``tickwire.signals`` (one row per (tenant, id)); the enricher sink
publishes each signal once to ``signals.enriched.v1`` with the cached market
and similar past patterns (see pipeline.derive.enrichment), after the signal
is stored (its flush follows the table's), so the graph stage, which reads
that topic, always finds the signal in ClickHouse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from pipeline.contracts.schemas import Signal
from pipeline.core.codec import RawRecord
from pipeline.derive.enrichment import PublishedMarkers, SignalEnricher
from pipeline.sinks.analytics_table import AnalyticsTableSink
from pipeline.sinks.base import Sink

Signals = Sequence[tuple[RawRecord, Signal]]


@dataclass
class SignalsSinks:
    """``None``: a role this run does not write."""

    signals: AnalyticsTableSink | None
    enricher: SignalEnricher | None
    markers: PublishedMarkers | None

    @property
    def ordered(self) -> list[Sink]:
        return [sink for sink in (self.signals, self.enricher) if sink is not None]

    @property
    def after_publish(self) -> list[Sink]:
        """Flushed after the producer: the markers of what the broker acknowledged."""
        return [self.markers] if self.markers is not None else []


def signals(messages: Signals, sinks: SignalsSinks) -> None:
    """Signals as ``signals`` rows, and queued for enrichment."""
    if sinks.signals is not None:
        rows = [signal for _, signal in messages]
        sinks.signals.add_columns([
            [s.tenant for s in rows], [s.id for s in rows], [s.broker for s in rows], [s.strategy for s in rows],
            [s.symbol for s in rows], [int(s.time_msc) for s in rows], [s.action for s in rows],
            [s.confidence for s in rows], [s.price for s in rows], [s.sl for s in rows], [s.tp for s in rows],
            [s.reason for s in rows], [r.partition for r, _ in messages], [r.offset for r, _ in messages],
        ], [record for record, _ in messages])
    if sinks.enricher is not None:
        sinks.enricher.add_signals(messages)
