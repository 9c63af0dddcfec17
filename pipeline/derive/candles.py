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

Windows are epoch-aligned below a day and follow the broker's trading day from
a day on (``TICKWIRE_BROKER_DAY_OFFSETS``, pipeline.contracts.timeframes): the
bar clock and :data:`BARS_SQL` shift those windows by the broker's offset.
Bars exist only where ticks do (a weekend without ticks has no bars).

Every bar carries its **indicators** (pipeline.derive.indicators), computed
before it is stored and published, from the bar and the stored bars of its
series before it (``TICKWIRE_INDICATOR_WINDOW_BARS`` of them; VWAP from the
running sums of its trading day stored with the bar before it, ``vwap_sums``),
read from ``candles FINAL`` with one query per timeframe for every series with
bars to compute (:data:`HISTORY_SQL`; a second, :data:`DAY_SQL`, only for series
whose day has no stored sums: bars stored before they existed); bars computed
in the same flush stand in for their stored rows. So they too are a pure function of
stored data. When a late tick amends a bar whose successors are already closed
(possible only when ``TICKWIRE_CANDLE_LATENESS_MS`` is at least the timeframe),
those successors are recomputed as well, their indicators depending on it.

The flush computes every pending bar first (:meth:`CandleBuilder._prepare`),
then stores and publishes them. Each pending bar remembers the tick record that
closed or amended it (the newest tick of its series in that batch): if the
store refuses the bar, that record is dead-lettered.
"""

from __future__ import annotations

import asyncio
import functools
from collections import defaultdict
from typing import Any, Iterable, Sequence

import msgspec

from pipeline.contracts.indicators import IndicatorSpec
from pipeline.contracts.schemas import Candle, Tick
from pipeline.contracts.timeframes import Timeframe, TradingDays
from pipeline.contracts.topics import CANDLES_TOPIC
from pipeline.core.codec import RawRecord
from pipeline.core.metrics import LATE_TICKS
from pipeline.derive.bar_clock import BarClock, BarWindow, ClockEvents
from pipeline.derive.indicators import BarPoint, SeriesRequest, VwapSums, many_series_indicators, needs_whole_day
from pipeline.sinks.base import ItemSink
from pipeline.sinks.topic import TopicPublisher
from pipeline.stores.analytics import AnalyticsSession
from pipeline.stores.analytics_tables import CANDLES_COLUMNS
from pipeline.stores.series_filter import series_filter

# One row per bar of the given series within [lo, hi). Ties in time are broken by
# the source position so that open/close are deterministic: ``position`` orders as the
# tuple (time, src_partition, src_offset) does, packed in one UInt256 (time in ms, made
# positive, above 32 bits of partition and 64 of offset), which the store compares ~2x
# faster than a tuple. ``shift``: the broker's trading-day offset for timeframes of a day
# or longer (brokers not listed: 0).
BARS_SQL = """
SELECT tenant, broker, symbol,
       intDiv(toUnixTimestamp64Milli(time) + shift, {tf:Int64}) * {tf:Int64} - shift AS start_ms,
       argMin(mid, position) AS open,
       max(mid) AS high,
       min(mid) AS low,
       argMax(mid, position) AS close,
       argMax(bid, position) AS bid_close,
       argMax(ask, position) AS ask_close,
       avg(spread) AS spread_avg,
       min(spread) AS spread_min,
       max(spread) AS spread_max,
       count() AS ticks,
       sum(volume) AS volume,
       sum(volume_real) AS volume_real
FROM (
    SELECT tenant, broker, symbol, time, bid, ask, spread, volume, volume_real,
           (bid + ask) / 2 AS mid,
           bitShiftLeft(toUInt256(toUnixTimestamp64Milli(time) + 4611686018427387904), 96)
               + bitShiftLeft(toUInt256(src_partition), 64) + src_offset AS position,
           transform(toString(broker), {brokers:Array(String)}, {shifts:Array(Int64)}, toInt64(0)) AS shift
    FROM {db}.ticks FINAL
    WHERE {series_filter}
      AND time >= fromUnixTimestamp64Milli({lo:Int64}) AND time < fromUnixTimestamp64Milli({hi:Int64})
)
GROUP BY tenant, broker, symbol, start_ms
"""


# Per series, oldest first: every stored bar from ``lo`` to ``hi`` and the ``before`` bars just before ``lo``
# (however far back they lie): what the indicators of the bars being computed read.
HISTORY_SQL = """
WITH bars AS (
    SELECT tenant, broker, symbol, toUnixTimestamp64Milli(start) AS start_ms, high, low, close, ticks, volume_real,
           vwap_sums
    FROM {db}.candles FINAL
    WHERE timeframe = {tf:String} AND {series_filter}
      AND start <= fromUnixTimestamp64Milli({hi:Int64})
)
SELECT * FROM (
    SELECT * FROM bars WHERE start_ms >= {lo:Int64}
    UNION ALL
    SELECT * FROM (SELECT * FROM bars WHERE start_ms < {lo:Int64}
                   ORDER BY tenant, broker, symbol, start_ms DESC LIMIT {before:UInt32} BY tenant, broker, symbol)
)
ORDER BY tenant, broker, symbol, start_ms
"""


# Per (series, from, to): its stored bars with from <= start < to (the rest of a day, for VWAP).
DAY_SQL = """
SELECT c.tenant, c.broker, c.symbol, toUnixTimestamp64Milli(c.start) AS start_ms, c.high, c.low, c.close, c.ticks,
       c.volume_real, c.vwap_sums
FROM {db}.candles AS c FINAL
INNER JOIN (SELECT arrayJoin({ranges:Array(Tuple(String, String, String, Int64, Int64))}) AS r) AS q
    ON c.tenant = q.r.1 AND c.broker = q.r.2 AND c.symbol = q.r.3
WHERE c.timeframe = {tf:String} AND toUnixTimestamp64Milli(c.start) >= q.r.4 AND toUnixTimestamp64Milli(c.start) < q.r.5
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


class CandleBuilder(ItemSink[Candle]):
    """Tracks event time (its :class:`BarClock`) and computes the bars that close or are amended.

    ``store_bars=False`` computes and publishes bars without writing them to ClickHouse
    (a replay that does not write the analytics role); ``publisher=None`` does not
    publish them. ``trading_days``: each broker's day offset (bars of a day or longer);
    ``indicators``: what every bar carries.
    """

    def __init__(
        self,
        session: AnalyticsSession,
        publisher: TopicPublisher | None,
        timeframes: Sequence[Timeframe],
        lateness_ms: int,
        *,
        store_bars: bool = True,
        trading_days: TradingDays | None = None,
        indicators: IndicatorSpec | None = None,
    ) -> None:
        self._session = session
        self._publisher = publisher
        self._timeframes = {tf.name: tf for tf in timeframes}
        self._days = trading_days or TradingDays()
        self._spec = indicators or IndicatorSpec()
        self._clock = BarClock(timeframes, lateness_ms, self._days)
        self._store_bars = store_bars
        self._pending: dict[BarWindow, RawRecord | None] = {}
        self._first_seen: dict[Series, tuple[int, RawRecord | None]] = {}
        self._bars: list[Candle] = []  # the pending bars, computed by _prepare
        self._sums: dict[tuple[str, str, str, str, int], VwapSums] = {}  # their VWAP sums, stored with them

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
        for window in events.amended:
            self._queue_successors(window, newest[window.tenant, window.broker, window.symbol])
        for series, first in events.first_seen.items():
            self._first_seen[series] = (first, newest[series])
        for (timeframe, outcome), count in events.late.items():
            LATE_TICKS.labels(timeframe, outcome).inc(count)

    def _queue_successors(self, amended: BarWindow, origin: RawRecord) -> None:
        """Queue the windows between an amended bar and the open bar (closed bars whose indicators read it).
        None unless the lateness reaches past a whole bar; windows without ticks give no bar."""
        tf = self._timeframes[amended.timeframe]
        open_start = self._clock.open_start((amended.tenant, amended.broker, amended.symbol), tf)
        if open_start is None:
            return
        for start in range(amended.start_ms + tf.ms, open_start, tf.ms):
            self._pending.setdefault(BarWindow(amended.tenant, amended.broker, amended.symbol, tf.name, start), origin)

    async def _prepare(self) -> None:
        """Compute every pending bar with its indicators (stored and published by :meth:`_write`). Idempotent."""
        await self._queue_first_seen()
        by_timeframe: dict[str, list[BarWindow]] = defaultdict(list)
        for window in self._pending:
            by_timeframe[window.timeframe].append(window)
        bars: list[Candle] = []
        for name, group in by_timeframe.items():
            bars += await self.with_indicators(self._timeframes[name], await self.compute(self._timeframes[name], group))
        self._bars = sorted(bars, key=lambda b: (b.tenant, b.broker, b.symbol, b.timeframe, b.start_ms))

    async def _queue_first_seen(self) -> None:
        """For series first seen by this process (a restart, a replay), queue the bars that were open
        before their first tick here: those may have closed without being computed."""
        if not self._first_seen:
            return
        firsts = [(*series, first) for series, (first, _) in self._first_seen.items()]
        _, rows = await self._session.query(PREVIOUS_TICK_SQL.replace("{db}", self._session.database), {"firsts": firsts})
        for tenant, broker, symbol, previous_ms in rows:
            first, origin = self._first_seen[tenant, broker, symbol]
            for tf in self._timeframes.values():
                previous = self._days.window_start(broker, tf, int(previous_ms))
                if previous < self._days.window_start(broker, tf, first):
                    self._pending.setdefault(BarWindow(tenant, broker, symbol, tf.name, previous), origin)
        self._first_seen.clear()

    def _items(self) -> list[Candle]:
        return self._bars

    async def _write(self, bars: Sequence[Candle]) -> None:
        """Store and publish ``bars`` (computed by :meth:`_prepare`). Idempotent."""
        if not bars:
            return
        if self._store_bars:
            sums = [self._sums.get((b.tenant, b.broker, b.symbol, b.timeframe, int(b.start_ms))) for b in bars]
            await self._session.insert_columns("candles", CANDLES_COLUMNS, _columns(bars, sums))
        if self._publisher is not None:
            for bar in bars:
                await self._publisher.add(CANDLES_TOPIC, bar.key.encode(), _encoder.encode(bar), self._origin(bar))

    def _origin(self, item: Candle) -> RawRecord | None:
        return self._pending.get(BarWindow(item.tenant, item.broker, item.symbol, item.timeframe, int(item.start_ms)))

    def _clear(self) -> None:
        self._pending.clear()
        self._bars = []
        self._sums = {}

    async def compute(self, timeframe: Timeframe, windows: Sequence[BarWindow]) -> list[Candle]:
        """The bars of ``windows`` (one timeframe) from the stored ticks, without indicators (``candle.v1``);
        windows without ticks give none."""
        if not windows:
            return []
        wanted = {(w.tenant, w.broker, w.symbol, w.start_ms) for w in windows}
        series = sorted({(w.tenant, w.broker, w.symbol) for w in windows})
        lo = min(w.start_ms for w in windows)
        hi = max(w.start_ms for w in windows) + timeframe.ms
        shifts = {broker: self._days.shift_ms(broker, timeframe) for _, broker, _ in series}
        shifted = sorted((broker, shift) for broker, shift in shifts.items() if shift)
        condition, filter_parameters = series_filter(series)
        _, rows = await self._session.query(
            BARS_SQL.replace("{db}", self._session.database).replace("{series_filter}", condition),
            {"tf": timeframe.ms, "lo": lo, "hi": hi, **filter_parameters,
             "brokers": [broker for broker, _ in shifted], "shifts": [shift for _, shift in shifted]},
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

    async def with_indicators(self, timeframe: Timeframe, bars: Sequence[Candle]) -> list[Candle]:
        """``bars`` (one timeframe) as ``candle.v2``, with their indicators (their VWAP sums are kept for the
        insert): one history query for all their series, the bars themselves standing in for their stored rows."""
        if not bars:
            return []
        lo_of: dict[Series, int] = {}
        for bar in bars:
            series = (bar.tenant, bar.broker, bar.symbol)
            lo_of[series] = min(lo_of.get(series, int(bar.start_ms)), int(bar.start_ms))
        lo, window = min(lo_of.values()), self._spec.window_bars
        condition, filter_parameters = series_filter(lo_of)
        _, rows = await self._session.query(
            HISTORY_SQL.replace("{db}", self._session.database).replace("{series_filter}", condition),
            {"tf": timeframe.name, "lo": lo, "hi": max(int(b.start_ms) for b in bars), "before": window,
             **filter_parameters},
        )
        history: dict[Series, dict[int, BarPoint]] = defaultdict(dict)
        _add_rows(history, rows)
        truncated = {series for series, points in history.items() if sum(1 for start in points if start < lo) >= window}
        for bar in bars:
            history[bar.tenant, bar.broker, bar.symbol][int(bar.start_ms)] = BarPoint(
                int(bar.start_ms), bar.high, bar.low, bar.close, int(bar.ticks), bar.volume_real)
        # a series whose VWAP would start from the first bar read, when more of its day may be stored: read the day
        ranges = []
        for series in sorted(truncated):
            points = [history[series][start] for start in sorted(history[series])]
            first = next(i for i, point in enumerate(points) if point.start_ms == lo_of[series])
            day_start = self._days.day_start(series[1], lo_of[series])
            if needs_whole_day(points, first, lambda t: self._days.day_start(series[1], t)) and day_start < points[0].start_ms:
                ranges.append((*series, day_start, points[0].start_ms))
        if ranges:
            _, rows = await self._session.query(DAY_SQL.replace("{db}", self._session.database),
                                                {"tf": timeframe.name, "ranges": ranges})
            _add_rows(history, rows)
        targets: dict[Series, set[int]] = defaultdict(set)
        for bar in bars:
            targets[bar.tenant, bar.broker, bar.symbol].add(int(bar.start_ms))
        values = await asyncio.to_thread(_indicators, history, targets, self._spec, self._days)
        done = []
        for bar in bars:
            found, sums = values[bar.tenant, bar.broker, bar.symbol][int(bar.start_ms)]
            self._sums[bar.tenant, bar.broker, bar.symbol, bar.timeframe, int(bar.start_ms)] = sums
            done.append(msgspec.structs.replace(bar, v=2, indicators=found))
        return done


def _add_rows(history: dict[Series, dict[int, BarPoint]], rows: Sequence[tuple[Any, ...]]) -> None:
    for tenant, broker, symbol, start_ms, high, low, close, ticks, volume_real, vwap_sums in rows:
        history[tenant, broker, symbol][int(start_ms)] = BarPoint(int(start_ms), high, low, close, int(ticks), volume_real,
                                                                  VwapSums.of_stored(vwap_sums))


def _indicators(history: dict[Series, dict[int, BarPoint]], targets: dict[Series, set[int]], spec: IndicatorSpec,
                days: TradingDays) -> dict[Series, dict[int, tuple[dict[str, float], VwapSums]]]:
    """Per series, the indicators of each target bar (by start) from the series' bars, every series in one batch
    (pure CPU work, mostly in numpy: run off the event loop, so that the stage's source goes on fetching meanwhile)."""
    requests: list[SeriesRequest] = []
    indexes = []
    for series, starts in targets.items():
        by_start = history[series]
        points = [by_start[start] for start in sorted(by_start)]
        index = {point.start_ms: i for i, point in enumerate(points)}
        broker = series[1]
        requests.append((points, [index[start] for start in starts], functools.partial(days.day_start, broker)))
        indexes.append(index)
    values = many_series_indicators(requests, spec)
    return {series: {start: found[index[start]] for start in starts}
            for (series, starts), index, found in zip(targets.items(), indexes, values)}


def _columns(bars: Sequence[Candle], sums: Sequence[VwapSums | None]) -> list[list[Any]]:
    return [
        [b.tenant for b in bars], [b.broker for b in bars], [b.symbol for b in bars], [b.timeframe for b in bars],
        [b.start_ms for b in bars], [b.end_ms for b in bars], [b.open for b in bars], [b.high for b in bars],
        [b.low for b in bars], [b.close for b in bars], [b.bid_close for b in bars], [b.ask_close for b in bars],
        [b.spread_avg for b in bars], [b.spread_min for b in bars], [b.spread_max for b in bars],
        [b.ticks for b in bars], [b.volume for b in bars], [b.volume_real for b in bars], [b.indicator_values for b in bars],
        [s.stored() if s is not None else [] for s in sums],
    ]
