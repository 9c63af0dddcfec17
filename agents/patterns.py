"""Stage ``patterns``: ``candles.v1`` → pattern embeddings and forward returns in the vector role.

A bar is on ``candles.v1`` only once the ingest stage stored it, so the
pattern builder (pipeline.derive.patterns) finds it, and the bars before it,
in ClickHouse. A vector store outage pauses only this stage, which catches up
from its own committed offsets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from pipeline.contracts.schemas import Candle
from pipeline.core.codec import RawRecord
from pipeline.derive.patterns import PatternBuilder
from pipeline.sinks.base import Sink

Bars = Sequence[tuple[RawRecord, Candle]]


@dataclass
class PatternsSinks:
    patterns: PatternBuilder | None

    @property
    def ordered(self) -> list[Sink]:
        return [self.patterns] if self.patterns is not None else []


def bars(messages: Bars, sinks: PatternsSinks) -> None:
    """Closed bars queued for embedding."""
    if sinks.patterns is not None:
        sinks.patterns.add_bars(messages)
