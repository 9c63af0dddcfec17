"""Stage ``outcomes``: ``candles.v1`` and ``signals.enriched.v1`` → signal outcomes (ClickHouse
``signal_outcomes``, ``signals.outcomes.v1``).

Both handlers only queue work: a stored bar says how far event time has come for its series (every horizon
that ends at or before its end has passed), a stored signal may already be past some horizons (a late signal,
a replay). The builder (pipeline.derive.outcomes) computes the outcomes due from the stored ticks at the
stage's checkpoint and publishes them; the rows sink stores them after the broker acknowledged them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from pipeline.contracts.schemas import Candle, EnrichedSignal
from pipeline.core.codec import RawRecord
from pipeline.derive.outcomes import OutcomeBuilder, OutcomeRows
from pipeline.sinks.base import Sink


@dataclass
class OutcomesSinks:
    """``None``: a role this run does not write (a replay may write only some)."""

    outcomes: OutcomeBuilder | None
    rows: OutcomeRows | None

    @property
    def ordered(self) -> list[Sink]:
        return [self.outcomes] if self.outcomes is not None else []

    @property
    def after_publish(self) -> list[Sink]:
        """Flushed after the producer: an outcome is stored once published, so stored means done."""
        return [self.rows] if self.rows is not None else []


def bars(messages: Sequence[tuple[RawRecord, Candle]], sinks: OutcomesSinks) -> None:
    """Stored bars: event time of their series, for the horizons it passed."""
    if sinks.outcomes is not None:
        sinks.outcomes.add_bars(messages)


def enriched_signals(messages: Sequence[tuple[RawRecord, EnrichedSignal]], sinks: OutcomesSinks) -> None:
    """Stored signals, for the horizons already passed when they arrive."""
    if sinks.outcomes is not None:
        sinks.outcomes.add_signals([(record, enriched.signal) for record, enriched in messages])
