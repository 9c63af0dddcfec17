"""Stage ``ingest``: ``mt5.ticks.v1`` → ClickHouse ``ticks``, hot keys, candles (table and ``candles.v1``).

The hot-tick handler is routed *eagerly*: it gets each batch as soon as the
source decoded it, even while a checkpoint flushes the other sinks, and the
hot keys are written right after, so a hot key's freshness does not depend on
the checkpoint's pace. Bars are computed from the stored ticks at the
checkpoint (see pipeline.derive.candles); the ticks handler only advances the
bar clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from pipeline.contracts.cache_keys import hot_key
from pipeline.contracts.schemas import Tick
from pipeline.core.codec import RawRecord
from pipeline.derive.candles import CandleBuilder
from pipeline.sinks.analytics_table import AnalyticsTableSink
from pipeline.sinks.base import Sink
from pipeline.sinks.hotcache import HotTickCache

Ticks = Sequence[tuple[RawRecord, Tick]]


@dataclass
class IngestSinks:
    """``None``: a role this run does not write (a replay may write only some)."""

    ticks: AnalyticsTableSink | None
    hot_ticks: HotTickCache | None
    candles: CandleBuilder

    @property
    def ordered(self) -> list[Sink]:
        """Flush order: the ticks before the bars computed from them."""
        return [sink for sink in (self.ticks, self.hot_ticks, self.candles) if sink is not None]


def hot_ticks(messages: Ticks, sinks: IngestSinks) -> None:
    """The newest tick of each key in the batch (greatest time, then greatest offset: messages come
    in offset order) as a hot-key candidate. Safe while the cache sink flushes (it is eager)."""
    if sinks.hot_ticks is None:
        return
    newest: dict[tuple[str, str, str], tuple[RawRecord, Tick]] = {}
    for message in messages:
        t = message[1]
        series = (t.tenant, t.broker, t.symbol)
        current = newest.get(series)
        if current is None or t.time_msc >= current[1].time_msc:
            newest[series] = message
    offer = sinks.hot_ticks.offer
    for (tenant, broker, symbol), (record, t) in newest.items():
        offer(hot_key(tenant, broker, symbol), int(t.time_msc), record.offset, t.bid, t.ask, t.last, int(t.volume),
              int(t.flags), record)


def ticks(messages: Ticks, sinks: IngestSinks) -> None:
    """Ticks as ``ticks`` rows, and the bar clock advanced over them."""
    if sinks.ticks is not None:
        ticks = [tick for _, tick in messages]
        bids = [t.bid for t in ticks]
        asks = [t.ask for t in ticks]
        sinks.ticks.add_columns([
            [t.tenant for t in ticks], [t.broker for t in ticks], [t.symbol for t in ticks], [int(t.time_msc) for t in ticks],
            bids, asks, [t.last for t in ticks], [int(t.volume) for t in ticks], [t.volume_real for t in ticks],
            [int(t.flags) for t in ticks], [a - b for a, b in zip(asks, bids)],
            [record.partition for record, _ in messages], [record.offset for record, _ in messages],
        ], [record for record, _ in messages])
    sinks.candles.track(messages)
