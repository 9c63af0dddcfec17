"""What each input topic does to the sinks: the processing shared by the agents and replay.

Every function takes the decoded messages of one batch (in offset order) and
the :class:`SinkSet`, and only buffers into sinks (no I/O): the checkpoint
writes. A sink that is ``None`` (a role a replay does not write) is skipped.
"""

from __future__ import annotations

from typing import Callable, Sequence

import msgspec

from pipeline.codec import RawRecord
from pipeline.producer import SIGNALS_TOPIC, TICKS_TOPIC
from pipeline.schemas import Signal, Tick
from pipeline.sink_set import SinkSet
from pipeline.sinks.hotcache import hot_key

Messages = Sequence[tuple[RawRecord, msgspec.Struct]]


def store_ticks(messages: Sequence[tuple[RawRecord, Tick]], sinks: SinkSet) -> None:
    """Ticks as ``ticks`` rows, and as hot-key candidates: only the newest tick of each key in the batch
    (greatest time, then greatest offset: messages come in offset order) is offered to the cache."""
    ticks = [tick for _, tick in messages]
    offsets = [record.offset for record, _ in messages]
    times = [int(t.time_msc) for t in ticks]
    volumes = [int(t.volume) for t in ticks]
    flags = [int(t.flags) for t in ticks]
    bids = [t.bid for t in ticks]
    asks = [t.ask for t in ticks]
    lasts = [t.last for t in ticks]
    if sinks.ticks is not None:
        sinks.ticks.add_columns([
            [t.tenant for t in ticks], [t.broker for t in ticks], [t.symbol for t in ticks], times, bids, asks, lasts,
            volumes, [t.volume_real for t in ticks], flags, [a - b for a, b in zip(asks, bids)],
            [record.partition for record, _ in messages], offsets,
        ])
    if sinks.hot_ticks is not None:
        newest: dict[tuple[str, str, str], int] = {}  # series -> index of its newest tick in the batch
        for i, t in enumerate(ticks):
            series = (t.tenant, t.broker, t.symbol)
            j = newest.get(series)
            if j is None or times[i] >= times[j]:
                newest[series] = i
        offer = sinks.hot_ticks.offer
        for (tenant, broker, symbol), i in newest.items():
            offer(hot_key(tenant, broker, symbol), times[i], offsets[i], bids[i], asks[i], lasts[i], volumes[i], flags[i])


def track_bars(messages: Sequence[tuple[RawRecord, Tick]], sinks: SinkSet) -> None:
    """Advance candle event time; bars that close are computed at the checkpoint."""
    sinks.candles.track(tick for _, tick in messages)


def store_signals(messages: Sequence[tuple[RawRecord, Signal]], sinks: SinkSet) -> None:
    """Signals as ``signals`` rows, and queued for enrichment."""
    signals = [signal for _, signal in messages]
    if sinks.signals is not None:
        sinks.signals.add_columns([
            [s.tenant for s in signals], [s.id for s in signals], [s.broker for s in signals], [s.strategy for s in signals],
            [s.symbol for s in signals], [int(s.time_msc) for s in signals], [s.action for s in signals],
            [s.confidence for s in signals], [s.price for s in signals], [s.sl for s in signals], [s.tp for s in signals],
            [s.reason for s in signals], [r.partition for r, _ in messages], [r.offset for r, _ in messages],
        ])
    if sinks.enricher is not None:
        sinks.enricher.add_signals(signals)


def queue_strategy_edges(messages: Sequence[tuple[RawRecord, Signal]], sinks: SinkSet) -> None:
    if sinks.strategy_edges is not None:
        sinks.strategy_edges.add_signals([signal for _, signal in messages])


Handler = Callable[[Messages, SinkSet], None]

#: input topic -> (message type, the processing of a batch of it, in order)
TOPIC_HANDLERS: dict[str, tuple[type[msgspec.Struct], tuple[Handler, ...]]] = {
    TICKS_TOPIC: (Tick, (store_ticks, track_bars)),
    SIGNALS_TOPIC: (Signal, (store_signals, queue_strategy_edges)),
}
