"""Enriched signals: each signal with the market when it was processed and similar past patterns.

The signals stage's sink, flushed at its checkpoint after the signals table:

1. signals already published (a marker in the cache says so) are skipped,
   so redelivery and replay do not publish them again;
2. the newest cached tick of each signal's (tenant, broker, symbol) gives the
   market: bid, ask, mid, spread, the tick's age and the slippage of the
   signal's price against the side it would execute on;
3. the symbol's current shape (:mod:`pipeline.derive.current_shape`: the embedding
   of its last closed bars on the pattern timeframe) is searched in the vector role, within the tenant, for
   the k most similar earlier windows whose forward return is known;
4. the enriched message goes to ``signals.enriched.v1``.

:class:`PublishedMarkers` writes the markers only after the producer flush
(the checkpoint's after-publish stage), so a crash before the broker
acknowledged the message republishes it rather than losing it. A crash after
the acknowledgement and before the marker can publish one duplicate, identical
but for ``enriched_at_ms``; consumers deduplicate by (tenant, signal id).
"""

from __future__ import annotations

import time
from typing import Sequence

import msgspec
import redis.asyncio as redis

from pipeline.contracts.cache_keys import hot_key
from pipeline.contracts.cache_keys import published_key as marker_key
from pipeline.contracts.schemas import EnrichedSignal, Market, Signal, SimilarPattern
from pipeline.contracts.timeframes import Timeframe
from pipeline.contracts.topics import ENRICHED_TOPIC
from pipeline.core.codec import RawRecord
from pipeline.derive.current_shape import Series, shapes_of
from pipeline.sinks.base import ItemSink
from pipeline.sinks.topic import TopicPublisher
from pipeline.stores.analytics import AnalyticsSession
from pipeline.stores.vectors.base import VectorStore

_encoder = msgspec.json.Encoder()


def published_key(signal: Signal) -> str:
    """The cache key marking ``signal`` as published (pipeline.contracts.cache_keys)."""
    return marker_key(signal.tenant, signal.id)


class PublishedMarkers(ItemSink[str]):
    """Marks signals as published; flushed after the producer (see module docstring)."""

    def __init__(self, cache: redis.Redis, ttl_s: int) -> None:
        self._cache = cache
        self._ttl_s = ttl_s
        self._keys: set[str] = set()

    @property
    def name(self) -> str:
        return "cache.published_signals"

    @property
    def pending(self) -> int:
        return len(self._keys)

    def add(self, keys: Sequence[str]) -> None:
        self._keys.update(keys)

    def _items(self) -> list[str]:
        return sorted(self._keys)

    async def _write(self, keys: Sequence[str]) -> None:
        async with self._cache.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(key, 1, ex=self._ttl_s)
            await pipe.execute()

    def _origin(self, item: str) -> None:
        return None  # a marker is not data: if the cache refused one, the signal may be published again

    def _clear(self) -> None:
        self._keys.clear()


class SignalEnricher(ItemSink[tuple[str, str]]):
    """Pending signals by (tenant, id), each with the record it came from."""

    def __init__(self, session: AnalyticsSession, cache: redis.Redis, vectors: VectorStore, publisher: TopicPublisher,
                 markers: PublishedMarkers, pattern_timeframe: Timeframe, similar_k: int) -> None:
        self._session = session
        self._cache = cache
        self._vectors = vectors
        self._publisher = publisher
        self._markers = markers
        self._timeframe = pattern_timeframe
        self._k = similar_k
        self._pending: dict[tuple[str, str], tuple[Signal, RawRecord | None]] = {}

    @property
    def name(self) -> str:
        return "signals.enriched"

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add_signals(self, signals: Sequence[tuple[RawRecord | None, Signal]]) -> None:
        for record, signal in signals:
            self._pending.setdefault((signal.tenant, signal.id), (signal, record))

    def _items(self) -> list[tuple[str, str]]:
        return sorted(self._pending)

    async def _write(self, keys: Sequence[tuple[str, str]]) -> None:
        """Publish the signals of ``keys`` that are not yet published, enriched."""
        signals = await self._unpublished([self._pending[key][0] for key in keys])
        if not signals:
            return
        markets = await self._markets(signals)
        similar = await self._similar({(s.tenant, s.broker, s.symbol) for s in signals})
        now_ms = int(time.time() * 1000)
        for signal in signals:
            series = (signal.tenant, signal.broker, signal.symbol)
            enriched = EnrichedSignal(v=1, signal=_as_published(signal), market=markets.get(signal.id),
                                      similar=similar.get(series, []), enriched_at_ms=now_ms)
            await self._publisher.add(ENRICHED_TOPIC, signal.key.encode(), _encoder.encode(enriched),
                                      self._pending[signal.tenant, signal.id][1])
        self._markers.add([published_key(s) for s in signals])

    def _origin(self, item: tuple[str, str]) -> RawRecord | None:
        return self._pending[item][1]

    def _clear(self) -> None:
        self._pending.clear()

    async def _unpublished(self, signals: list[Signal]) -> list[Signal]:
        flags = await self._cache.mget([published_key(s) for s in signals])
        return [s for s, flag in zip(signals, flags) if flag is None]

    async def _markets(self, signals: list[Signal]) -> dict[str, Market]:
        async with self._cache.pipeline(transaction=False) as pipe:
            for signal in signals:
                pipe.hmget(hot_key(signal.tenant, signal.broker, signal.symbol), "bid", "ask", "time_msc")
            ticks = await pipe.execute()
        markets = {}
        for signal, (bid, ask, tick_time) in zip(signals, ticks):
            if bid is None or ask is None or tick_time is None:
                continue
            bid, ask, tick_time = float(bid), float(ask), int(tick_time)
            markets[signal.id] = Market(bid=bid, ask=ask, mid=(bid + ask) / 2, spread=ask - bid, tick_time_msc=tick_time,
                                        tick_age_ms=int(signal.time_msc) - tick_time, slippage=_slippage(signal, bid, ask))
        return markets

    async def _similar(self, series: set[Series]) -> dict[Series, list[SimilarPattern]]:
        """The k nearest earlier patterns (with known forward return) of each series' current shape."""
        found: dict[Series, list[SimilarPattern]] = {}
        for key, shape in (await shapes_of(self._session, self._timeframe.name, series)).items():
            if shape.vector is None:
                continue
            matches = await self._vectors.search(key[0], shape.vector, self._k, timeframe=self._timeframe.name,
                                                 before_ms=shape.window_end_ms, with_forward_return_only=True)
            found[key] = [
                SimilarPattern(symbol=m.key.symbol, broker=m.key.broker, timeframe=m.key.timeframe,
                               window_end_ms=m.key.window_end_ms, distance=m.distance, forward_return=m.forward_return)
                for m in matches
            ]
        return found


def _as_published(signal: Signal) -> Signal:
    """The signal with its integer fields as JSON integers (the decoder holds them as floats)."""
    return msgspec.structs.replace(signal, v=1, time_msc=int(signal.time_msc))


def _slippage(signal: Signal, bid: float, ask: float) -> float | None:
    """Execution price minus the signal's price, positive when worse for the signal."""
    if signal.price is None:
        return None
    if signal.action == "buy":
        return ask - signal.price
    if signal.action == "sell":
        return signal.price - bid
    return None
