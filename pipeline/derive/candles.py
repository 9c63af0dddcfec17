"""Candles computed from the stored, deduplicated ticks, at checkpoint time.

The ingest stage feeds ticks to :meth:`CandleBuilder.track`, which only
decides *which* bars closed or were amended (see pipeline.derive.bar_clock);
the flush computes them. It is flushed after the ticks sink, so every tick of
a closed bar is already in ClickHouse, and it computes each bar with one
aggregation over ``ticks FINAL``. So a bar is a pure function of the ticks
stored for its window: redelivery, a restart or a replay recompute the same
bar, and the upsert (ReplacingMergeTree keyed by the bar's identity, version =
tick count) keeps one row per bar. Each computed bar is then published to
``candles.v1``, from which the patterns and graph stages derive (a bar is on
the topic only once it is in ClickHouse).

Each pending bar remembers the tick record that closed or amended it (the
newest tick of its series in that batch): if the store refuses the bar, that
record is dead-lettered.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Sequence

import msgspec

from pipeline.contracts.schemas import Candle, Tick
from pipeline.contracts.timeframes import Timeframe
from pipeline.contracts.topics import CANDLES_TOPIC
from pipeline.core.codec import RawRecord
from pipeline.core.metrics import LATE_TICKS
from pipeline.derive.bar_clock import BarClock, BarWindow, ClockEvents
from pipeline.sinks.base import ItemSink
from pipeline.sinks.topic import TopicPublisher
from pipeline.stores.analytics import AnalyticsSession
from pipeline.stores.analytics_tables import CANDLES_COLUMNS

# One row per bar of the given series within [lo, hi). Ties in time are broken by
# the source position so that open/close are deterministic.
BARS_SQL = """
SELECT tenant, broker, symbol,
       intDiv(toUnixTimestamp64Milli(time), {tf:Int64}) * {tf:Int64} AS start_ms,
       argMin(mid, (time, src_partition, src_offset)) AS open,
       max(mid) AS high,
       min(mid) AS low,
       argMax(mid, (time, src_partition, src_offset)) AS close,
       argMax(bid, (time, src_partition, src_offset)) AS bid_close,
       argMax(ask, (time, src_partition, src_offset)) AS ask_close,
       avg(spread) AS spread_avg,
       min(spread) AS spread_min,
       max(spread) AS spread_max,
       count() AS ticks,
       sum(volume) AS volume,
       sum(volume_real) AS volume_real
FROM (
    SELECT tenant, broker, symbol, time, bid, ask, spread, volume, volume_real, src_partition, src_offset,
           (bid + ask) / 2 AS mid
    FROM {db}.ticks FINAL
    WHERE (tenant, broker, symbol) IN {series:Array(Tuple(String, String, String))}
      AND time >= fromUnixTimestamp64Milli({lo:Int64}) AND time < fromUnixTimestamp64Milli({hi:Int64})
)
GROUP BY tenant, broker, symbol, start_ms
"""


# Per series first seen by this process: the time of its latest stored tick before that.
PREVIOUS_TICK_SQL = """
SELECT q.1 AS tenant, q.2 AS broker, q.3 AS symbol, toUnixTimestamp64Milli(max(t.time)) AS previous_ms
FROM {db}.ticks AS t FINAL
INNER JOIN (SELECT arrayJoin({firsts:Array(Tuple(String, String, String, Int64))}) AS q) AS f
    ON t.tenant = f.q.1 AND t.broker = f.q.2 AND t.symbol = f.q.3
WHERE toUnixTimestamp64Milli(t.time) < f.q.4
GROUP BY tenant, broker, symbol
"""

Series = tuple[str, str, str]
_encoder = msgspec.json.Encoder()


class CandleBuilder(ItemSink[BarWindow]):
    """Tracks event time (its :class:`BarClock`) and computes the bars that close or are amended.

    ``store_bars=False`` computes and publishes bars without writing them to ClickHouse
    (a replay that does not write the analytics role); ``publisher=None`` does not
    publish them.
    """

    def __init__(
        self,
        session: AnalyticsSession,
        publisher: TopicPublisher | None,
        timeframes: Sequence[Timeframe],
        lateness_ms: int,
        *,
        store_bars: bool = True,
    ) -> None:
        self._session = session
        self._publisher = publisher
        self._timeframes = {tf.name: tf for tf in timeframes}
        self._clock = BarClock(timeframes, lateness_ms)
        self._store_bars = store_bars
        self._pending: dict[BarWindow, RawRecord | None] = {}
        self._first_seen: dict[Series, tuple[int, RawRecord | None]] = {}

    @property
    def name(self) -> str:
        return "candles"

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self._first_seen)

    def track(self, messages: Iterable[tuple[RawRecord, Tick]]) -> None:
        """Advance the event-time clock over the ticks; queue the bars they close or amend."""
        by_series: dict[Series, list[float]] = {}
        newest: dict[Series, RawRecord] = {}
        for record, tick in messages:
            series = (tick.tenant, tick.broker, tick.symbol)
            times = by_series.get(series)
            if times is None:
                by_series[series] = [tick.time_msc]
            else:
                times.append(tick.time_msc)
            newest[series] = record
        events = ClockEvents()
        for series, times in by_series.items():
            self._clock.observe_series(series, times, events)
        for window in (*events.closed, *events.amended):
            self._pending[window] = newest[window.tenant, window.broker, window.symbol]
        for series, first in events.first_seen.items():
            self._first_seen[series] = (first, newest[series])
        for (timeframe, outcome), count in events.late.items():
            LATE_TICKS.labels(timeframe, outcome).inc(count)

    async def _prepare(self) -> None:
        """For series first seen by this process (a restart, a replay), queue the bars that were open
        before their first tick here: those may have closed without being computed."""
        if not self._first_seen:
            return
        firsts = [(*series, first) for series, (first, _) in self._first_seen.items()]
        _, rows = await self._session.query(PREVIOUS_TICK_SQL.replace("{db}", self._session.database), {"firsts": firsts})
        for tenant, broker, symbol, previous_ms in rows:
            first, origin = self._first_seen[tenant, broker, symbol]
            for tf in self._timeframes.values():
                if tf.window_start(int(previous_ms)) < tf.window_start(first):
                    self._pending.setdefault(BarWindow(tenant, broker, symbol, tf.name, tf.window_start(int(previous_ms))),
                                             origin)
        self._first_seen.clear()

    def _items(self) -> list[BarWindow]:
        return sorted(self._pending)

    async def _write(self, windows: Sequence[BarWindow]) -> None:
        """Compute, store and publish the bars of ``windows``. Idempotent."""
        bars: list[Candle] = []
        by_timeframe: dict[str, list[BarWindow]] = defaultdict(list)
        for window in windows:
            by_timeframe[window.timeframe].append(window)
        for name, group in by_timeframe.items():
            bars += await self.compute(self._timeframes[name], group)
        if not bars:
            return
        if self._store_bars:
            await self._session.insert_columns("candles", CANDLES_COLUMNS, _columns(bars))
        if self._publisher is not None:
            for bar in bars:
                origin = self._pending.get(BarWindow(bar.tenant, bar.broker, bar.symbol, bar.timeframe, bar.start_ms))
                await self._publisher.add(CANDLES_TOPIC, bar.key.encode(), _encoder.encode(bar), origin)

    def _origin(self, item: BarWindow) -> RawRecord | None:
        return self._pending.get(item)

    def _clear(self) -> None:
        self._pending.clear()

    async def compute(self, timeframe: Timeframe, windows: Sequence[BarWindow]) -> list[Candle]:
        """The bars of ``windows`` (one timeframe) from the stored ticks; windows without ticks give none."""
        wanted = {(w.tenant, w.broker, w.symbol, w.start_ms) for w in windows}
        series = sorted({(w.tenant, w.broker, w.symbol) for w in windows})
        lo = min(w.start_ms for w in windows)
        hi = max(w.start_ms for w in windows) + timeframe.ms
        _, rows = await self._session.query(
            BARS_SQL.replace("{db}", self._session.database),
            {"tf": timeframe.ms, "series": series, "lo": lo, "hi": hi},
        )
        bars = []
        for row in rows:
            tenant, broker, symbol, start_ms = row[0], row[1], row[2], int(row[3])
            if (tenant, broker, symbol, start_ms) not in wanted:
                continue
            bars.append(Candle(
                v=1, tenant=tenant, broker=broker, symbol=symbol, timeframe=timeframe.name,
                start_ms=start_ms, end_ms=start_ms + timeframe.ms,
                open=row[4], high=row[5], low=row[6], close=row[7], bid_close=row[8], ask_close=row[9],
                spread_avg=row[10], spread_min=row[11], spread_max=row[12],
                ticks=int(row[13]), volume=int(row[14]), volume_real=float(row[15]),
            ))
        return bars


def _columns(bars: Sequence[Candle]) -> list[list[Any]]:
    return [
        [b.tenant for b in bars], [b.broker for b in bars], [b.symbol for b in bars], [b.timeframe for b in bars],
        [b.start_ms for b in bars], [b.end_ms for b in bars], [b.open for b in bars], [b.high for b in bars],
        [b.low for b in bars], [b.close for b in bars], [b.bid_close for b in bars], [b.ask_close for b in bars],
        [b.spread_avg for b in bars], [b.spread_min for b in bars], [b.spread_max for b in bars],
        [b.ticks for b in bars], [b.volume for b in bars], [b.volume_real for b in bars],
    ]
