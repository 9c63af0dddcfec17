"""What each input topic does to the sinks: the processing shared by the agents and replay.

Every function takes the decoded messages of one batch (in offset order) and
the :class:`SinkSet`, and only buffers into sinks (no I/O): the checkpoint
writes (and eager sinks are also written after each batch). A sink that is
``None`` (a role a replay does not write) is skipped.
"""

from __future__ import annotations

from typing import Callable, Sequence

import msgspec

from pipeline.contracts.schemas import Signal, Tick
from pipeline.core.codec import RawRecord
from pipeline.ingest.producer import SIGNALS_TOPIC, TICKS_TOPIC
from pipeline.runtime.sink_set import SinkSet
from pipeline.sinks.hotcache import hot_key

Messages = Sequence[tuple[RawRecord, msgspec.Struct]]


def store_ticks(messages: Sequence[tuple[RawRecord, Tick]], sinks: SinkSet) -> None:
    """Ticks as ``ticks`` rows."""
    if sinks.ticks is None:
        return
    ticks = [tick for _, tick in messages]
    bids = [t.bid for t in ticks]
    asks = [t.ask for t in ticks]
    sinks.ticks.add_columns([
        [t.tenant for t in ticks], [t.broker for t in ticks], [t.symbol for t in ticks], [int(t.time_msc) for t in ticks],
        bids, asks, [t.last for t in ticks], [int(t.volume) for t in ticks], [t.volume_real for t in ticks],
        [int(t.flags) for t in ticks], [a - b for a, b in zip(asks, bids)],
        [record.partition for record, _ in messages], [record.offset for record, _ in messages],
    ])


def offer_hot_ticks(messages: Sequence[tuple[RawRecord, Tick]], sinks: SinkSet) -> None:
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
        offer(hot_key(tenant, broker, symbol), int(t.time_msc), record.offset, t.bid, t.ask, t.last, int(t.volume), int(t.flags))


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
    TICKS_TOPIC: (Tick, (offer_hot_ticks, store_ticks, track_bars)),
    SIGNALS_TOPIC: (Signal, (store_signals, queue_strategy_edges)),
}
