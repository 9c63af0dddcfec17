"""Signal outcomes: what the market did after each signal, at each horizon, computed from the stored ticks.

For every signal and every horizon ``h`` of ``TICKWIRE_OUTCOME_HORIZONS`` (default ``5m,1h,1d``) the outcome
is a pure function of the ticks stored for the signal's series (``ticks FINAL``, tenant + broker + symbol) in
the **window** ``[t, t + h)``, ``t`` the signal's time, and of the signal itself:

- **entry**: the signal's ``price`` if it has one, else the mid ``(bid + ask) / 2`` of the first tick of the
  window (ties in a millisecond: the first in source position); none without either.
- **exit**: the mid of the last tick of the window (the price at the horizon).
- **move** ``(exit - entry) / entry``, whatever the action; **directed return**: the move in the signal's
  direction (buy: the move, sell: minus the move). ``close`` and ``hold`` have no direction: their outcome
  has the move, and no directed return, hits or adverse excursion.
- **tp / sl** on the side the position would be closed on: a buy's levels are checked against the bid
  (tp reached when ``bid >= tp``, sl when ``bid <= sl``), a sell's against the ask (tp when ``ask <= tp``,
  sl when ``ask >= sl``). The levels are taken as sent. Each level's hit time is the time of the first tick
  that reached it; **first hit**: the earlier of the two; reached in the same millisecond, it is ``sl``
  (conservative: which came first is not known); neither reached: none.
- **MAE** (maximum adverse excursion) over the whole window, on the same side, as a fraction of the entry,
  never negative: ``max(0, (entry - lowest bid) / entry)`` for a buy, ``max(0, (highest ask - entry) / entry)``
  for a sell. So an sl below a buy's entry is hit exactly when the MAE reaches ``(entry - sl) / entry``.

**When** (event time): a horizon has passed for a signal once a bar of its series that ends at or after
``t + h`` is stored. Bars are stored only after the ticks that close them, so every tick of the window is
stored by then (a tick later than ``TICKWIRE_CANDLE_LATENESS_MS`` behind its series is not waited for,
as for bars). The outcomes stage feeds this builder the bars of ``candles.v1`` and the signals of
``signals.enriched.v1`` (each published only once stored) and, at each checkpoint:

1. per series whose bars advanced, selects the signals whose ``t + h`` lies after the newest bar end this
   process had seen for it and at or before the newest pending bar end (a series first seen by this process,
   after a start or a restart: every signal up to that end whose outcome is not stored yet, so a crash between
   a bar and its outcomes loses nothing); for a bar that may have been amended by a late tick (its end not
   past what was seen), the signals whose ``t + h`` lies within the lateness around its end are recomputed
   (the only ones a late tick the bar clock still accepts can change);
2. per signal consumed (a late signal, a replay), the horizons already passed, per the newest stored bar end
   of its series, whose outcome is not stored yet;
3. computes all of them with one read of ``ticks FINAL`` per horizon (not one per signal; a backlog in chunks
   spanning at most two horizons of ticks), each window a slice of those ticks as arrays (:class:`SeriesTicks`;
   measured: 1,000 signals x 3 horizons over two days of 1 tick/s in 1.6 s on chDB, where a range join in
   ClickHouse took 45 s), publishes them to ``signals.outcomes.v1`` and hands them to :class:`OutcomeRows`,
   flushed *after* the producer: an outcome is stored only once the broker acknowledged it, so "stored" can be
   trusted as "done" by steps 1 and 2 after a restart.

Every write is an upsert (ReplacingMergeTree keyed by tenant, signal id, horizon; version: the window's tick
count), so a redelivery, a restart or a replay writes the same rows and each outcome is visible once.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Collection, Iterable, Sequence

import msgspec
import numpy as np
import numpy.typing as npt

from pipeline.contracts.schemas import Candle, Signal, SignalOutcome
from pipeline.contracts.timeframes import Timeframe
from pipeline.contracts.topics import OUTCOMES_TOPIC
from pipeline.core.codec import RawRecord
from pipeline.sinks.base import ItemSink
from pipeline.sinks.topic import TopicPublisher
from pipeline.stores.analytics import AnalyticsSession
from pipeline.stores.analytics_tables import SIGNAL_OUTCOMES_COLUMNS
from pipeline.stores.series_filter import series_filter

#: +1 buy, -1 sell; close and hold have no direction.
DIRECTIONS = {"buy": 1, "sell": -1, "close": 0, "hold": 0}

Series = tuple[str, str, str]
#: An outcome's identity: (tenant, signal id, horizon in ms).
OutcomeKey = tuple[str, str, int]


def parse_horizons(text: str) -> list[Timeframe]:
    """``"5m,1h,1d"`` as horizons, shortest first, written like timeframes; ValueError on a bad or repeated one."""
    horizons = [Timeframe.parse(part) for part in text.split(",") if part.strip()]
    if not horizons:
        raise ValueError("no horizon given: use e.g. 5m,1h,1d")
    if len({h.ms for h in horizons}) != len(horizons):
        raise ValueError(f"horizons {text!r} name one length twice")
    return sorted(horizons)


@dataclass(frozen=True)
class StoredSignal:
    """A signal as stored in ``signals`` (what an outcome needs of it)."""

    tenant: str
    id: str
    broker: str
    strategy: str
    symbol: str
    time_ms: int
    action: str
    price: float | None = None
    sl: float | None = None
    tp: float | None = None

    @property
    def series(self) -> Series:
        return self.tenant, self.broker, self.symbol

    @property
    def direction(self) -> int:
        return DIRECTIONS.get(self.action, 0)


@dataclass(frozen=True)
class WindowStats:
    """What an outcome needs of the ticks of its window (see :func:`window_stats`)."""

    ticks: int = 0
    first_mid: float | None = None
    last_mid: float | None = None
    last_ms: int | None = None
    min_bid: float | None = None
    max_ask: float | None = None
    tp_ms: int | None = None
    sl_ms: int | None = None


NO_TICKS = WindowStats()


def tp_reached(direction: int, tp: float | None, bid: float, ask: float) -> bool:
    """Whether a tick reaches take-profit ``tp`` on the closing side (buy: bid >= tp; sell: ask <= tp)."""
    if tp is None:
        return False
    return (direction == 1 and bid >= tp) or (direction == -1 and ask <= tp)


def sl_reached(direction: int, sl: float | None, bid: float, ask: float) -> bool:
    """Whether a tick reaches stop-loss ``sl`` on the closing side (buy: bid <= sl; sell: ask >= sl)."""
    if sl is None:
        return False
    return (direction == 1 and bid <= sl) or (direction == -1 and ask >= sl)


def window_stats(signal: StoredSignal, ticks: Iterable[tuple[int, float, float]]) -> WindowStats:
    """The stats of a window's ticks ``(time_ms, bid, ask)``, given in stored order (time, then source position).

    The reference for :meth:`SeriesTicks.window`, which computes the same on arrays for many windows at once.
    """
    count, first_mid, last_mid, last_ms = 0, None, None, None
    min_bid: float | None = None
    max_ask: float | None = None
    tp_ms: int | None = None
    sl_ms: int | None = None
    direction = signal.direction
    for time_ms, bid, ask in ticks:
        mid = (bid + ask) / 2
        if count == 0:
            first_mid = mid
        count += 1
        last_mid, last_ms = mid, time_ms
        min_bid = bid if min_bid is None else min(min_bid, bid)
        max_ask = ask if max_ask is None else max(max_ask, ask)
        if tp_ms is None and tp_reached(direction, signal.tp, bid, ask):
            tp_ms = time_ms
        if sl_ms is None and sl_reached(direction, signal.sl, bid, ask):
            sl_ms = time_ms
    return WindowStats(count, first_mid, last_mid, last_ms, min_bid, max_ask, tp_ms, sl_ms)


def first_hit(tp_ms: int | None, sl_ms: int | None) -> tuple[str | None, int | None]:
    """Which level was reached first and when: the earlier; in the same millisecond, ``sl``; neither: (None, None)."""
    if sl_ms is not None and (tp_ms is None or sl_ms <= tp_ms):
        return "sl", sl_ms
    if tp_ms is not None:
        return "tp", tp_ms
    return None, None


def outcome(signal: StoredSignal, horizon: Timeframe, stats: WindowStats) -> SignalOutcome:
    """The outcome of ``signal`` at ``horizon`` from its window's stats (definitions: the module docstring)."""
    direction = signal.direction
    if signal.price is not None:
        entry, source = signal.price, "price"
    elif stats.first_mid is not None:
        entry, source = stats.first_mid, "first_tick"
    else:
        entry, source = None, None
    move = (stats.last_mid - entry) / entry if entry is not None and stats.last_mid is not None else None
    directed = move * direction if move is not None and direction else None
    mae: float | None = None
    if direction and entry is not None and stats.ticks:
        if direction == 1 and stats.min_bid is not None:
            mae = max(0.0, (entry - stats.min_bid) / entry)
        elif direction == -1 and stats.max_ask is not None:
            mae = max(0.0, (stats.max_ask - entry) / entry)
    tp_ms = stats.tp_ms if direction else None
    sl_ms = stats.sl_ms if direction else None
    hit, hit_ms = first_hit(tp_ms, sl_ms)
    return SignalOutcome(
        v=1, tenant=signal.tenant, broker=signal.broker, symbol=signal.symbol, strategy=signal.strategy,
        signal_id=signal.id, action=signal.action,  # type: ignore[arg-type]  # a stored action is one of the four
        signal_time_msc=signal.time_ms, horizon=horizon.name, horizon_ms=horizon.ms,
        horizon_end_msc=signal.time_ms + horizon.ms, entry=entry,
        entry_source=source,  # type: ignore[arg-type]  # "price", "first_tick" or None
        tp=signal.tp, sl=signal.sl, exit_mid=stats.last_mid, exit_time_msc=stats.last_ms, move=move,
        directed_return=directed, tp_hit_msc=tp_ms, sl_hit_msc=sl_ms,
        first_hit=hit,  # type: ignore[arg-type]  # "tp", "sl" or None
        first_hit_msc=hit_ms, mae=mae, ticks=stats.ticks,
    )


def outcome_key(o: SignalOutcome) -> OutcomeKey:
    return o.tenant, o.signal_id, int(o.horizon_ms)


# Per series (tenant, broker, symbol, lo, hi, span_lo, span_hi): the signals with a horizon end in (lo, hi] whose
# outcome there is not stored yet (use_done = 0: whether stored or not), and the signals with a horizon end in
# (span_lo, span_hi] (to be recomputed, the caller picks which); with the horizons already stored of each (of the
# signals since ``since``, before which no bound reaches). One bounds row per series: no cross product.
RANGES_SQL = """
SELECT s.tenant, s.id, s.broker, s.strategy, s.symbol, toUnixTimestamp64Milli(s.time) AS t, s.action, s.price, s.sl,
       s.tp, o.done
FROM {db}.signals AS s FINAL
INNER JOIN (SELECT arrayJoin({bounds:Array(Tuple(String, String, String, Int64, Int64, Int64, Int64))}) AS r) AS q
    ON s.tenant = q.r.1 AND s.broker = q.r.2 AND s.symbol = q.r.3
LEFT JOIN (SELECT tenant, signal_id, groupUniqArray(toInt64(horizon_ms)) AS done FROM {db}.signal_outcomes
           WHERE (tenant, broker, symbol) IN {series:Array(Tuple(String, String, String))}
             AND signal_time >= fromUnixTimestamp64Milli({since:Int64})
           GROUP BY tenant, signal_id) AS o
    ON o.tenant = s.tenant AND o.signal_id = s.id
WHERE (s.tenant, s.broker, s.symbol) IN {series:Array(Tuple(String, String, String))}
  AND ((toUnixTimestamp64Milli(s.time) + {min_h:Int64} <= q.r.5 AND toUnixTimestamp64Milli(s.time) + {max_h:Int64} > q.r.4
        AND ({use_done:UInt8} = 0 OR NOT hasAll(o.done, arrayFilter(h -> toUnixTimestamp64Milli(s.time) + h > q.r.4
                                                AND toUnixTimestamp64Milli(s.time) + h <= q.r.5, {horizons:Array(Int64)}))))
       OR (toUnixTimestamp64Milli(s.time) + {min_h:Int64} <= q.r.7 AND toUnixTimestamp64Milli(s.time) + {max_h:Int64} > q.r.6))
"""

# The signals consumed, with the newest stored bar end of their series and the horizons already stored.
SIGNALS_SQL = """
SELECT s.tenant, s.id, s.broker, s.strategy, s.symbol, toUnixTimestamp64Milli(s.time) AS t, s.action, s.price, s.sl,
       s.tp, b.passed, o.done
FROM {db}.signals AS s FINAL
INNER JOIN (SELECT tenant, broker, symbol, toUnixTimestamp64Milli(max(end)) AS passed FROM {db}.candles
            WHERE (tenant, broker, symbol) IN {series:Array(Tuple(String, String, String))}
            GROUP BY tenant, broker, symbol) AS b
    ON s.tenant = b.tenant AND s.broker = b.broker AND s.symbol = b.symbol
LEFT JOIN (SELECT tenant, signal_id, groupUniqArray(toInt64(horizon_ms)) AS done FROM {db}.signal_outcomes
           WHERE (tenant, broker, symbol) IN {series:Array(Tuple(String, String, String))}
           GROUP BY tenant, signal_id) AS o
    ON o.tenant = s.tenant AND o.signal_id = s.id
WHERE (s.tenant, s.id) IN {ids:Array(Tuple(String, String))}
"""

# The ticks of some series in [lo, hi), in stored order (time, then source position): one query for many windows,
# read as RowBinary straight into a numpy array (:data:`TICK_ROW`, 32 bytes a tick; decoding the rows into Python
# values, in the session's thread and holding the GIL, cost more than the query). Each row names its series by the
# cityHash64 of its names (:data:`SERIES_HASHES_SQL` gives the hash of each series asked for).
TICKS_SQL = """
SELECT cityHash64(tenant, broker, symbol) AS series_hash, toUnixTimestamp64Milli(time) AS ms, bid, ask
FROM {db}.ticks FINAL
WHERE {series_filter}
  AND time >= fromUnixTimestamp64Milli({lo:Int64}) AND time < fromUnixTimestamp64Milli({hi:Int64})
ORDER BY tenant, broker, symbol, time, src_partition, src_offset
"""

TICK_ROW = np.dtype([("series_hash", "<u8"), ("ms", "<i8"), ("bid", "<f8"), ("ask", "<f8")])

SERIES_HASHES_SQL = """
SELECT s.1, s.2, s.3, cityHash64(s.1, s.2, s.3) FROM (SELECT arrayJoin({series:Array(Tuple(String, String, String))}) AS s)
"""


@dataclass(frozen=True)
class SeriesTicks:
    """The ticks of one series over a span, in stored order, as arrays (times in epoch ms)."""

    ms: npt.NDArray[np.int64]
    bid: npt.NDArray[np.float64]
    ask: npt.NDArray[np.float64]

    def window(self, signal: StoredSignal, start_ms: int, end_ms: int) -> WindowStats:
        """:func:`window_stats` of the ticks in [start_ms, end_ms), computed on the arrays (the same numbers)."""
        i, j = (int(k) for k in np.searchsorted(self.ms, [start_ms, end_ms], side="left"))
        if i >= j:
            return NO_TICKS
        bid, ask = self.bid[i:j], self.ask[i:j]
        direction, tp, sl = signal.direction, signal.tp, signal.sl
        tp_ms = sl_ms = None
        if direction and tp is not None:
            tp_ms = self._first(i, bid >= tp if direction == 1 else ask <= tp)
        if direction and sl is not None:
            sl_ms = self._first(i, bid <= sl if direction == 1 else ask >= sl)
        return WindowStats(ticks=j - i, first_mid=float((bid[0] + ask[0]) / 2), last_mid=float((bid[-1] + ask[-1]) / 2),
                           last_ms=int(self.ms[j - 1]), min_bid=float(bid.min()), max_ask=float(ask.max()),
                           tp_ms=tp_ms, sl_ms=sl_ms)

    def _first(self, offset: int, reached: npt.NDArray[np.bool_]) -> int | None:
        """Time of the first tick where ``reached`` (a window's mask starting at ``offset``) holds; None if none."""
        k = int(np.argmax(reached))
        return int(self.ms[offset + k]) if reached[k] else None


_encoder = msgspec.json.Encoder()


def _stored_signal(row: Sequence[Any]) -> StoredSignal:
    tenant, signal_id, broker, strategy, symbol, time_ms, action, price, sl, tp = row[:10]
    return StoredSignal(tenant, signal_id, broker, strategy, symbol, int(time_ms), action, price, sl, tp)


class OutcomeRows(ItemSink[int]):
    """``signal_outcomes`` rows; flushed after the producer, so a stored outcome is a published one."""

    def __init__(self, session: AnalyticsSession) -> None:
        self._session = session
        self._rows: list[SignalOutcome] = []
        self._origins: list[RawRecord | None] = []

    @property
    def name(self) -> str:
        return "clickhouse.signal_outcomes"

    @property
    def pending(self) -> int:
        return len(self._rows)

    def add(self, outcomes: Sequence[SignalOutcome], origins: Sequence[RawRecord | None]) -> None:
        self._rows.extend(outcomes)
        self._origins.extend(origins)

    def _items(self) -> range:
        return range(len(self._rows))

    async def _write(self, items: Sequence[int]) -> None:
        rows = [self._rows[i] for i in items]
        columns: list[list[Any]] = [
            [o.tenant for o in rows], [o.signal_id for o in rows], [int(o.horizon_ms) for o in rows],
            [o.horizon for o in rows], [o.broker for o in rows], [o.strategy for o in rows], [o.symbol for o in rows],
            [o.action for o in rows], [int(o.signal_time_msc) for o in rows], [int(o.horizon_end_msc) for o in rows],
            [o.entry for o in rows], [o.entry_source for o in rows], [o.tp for o in rows], [o.sl for o in rows],
            [o.exit_mid for o in rows], [_ms(o.exit_time_msc) for o in rows], [o.move for o in rows],
            [o.directed_return for o in rows], [_ms(o.tp_hit_msc) for o in rows], [_ms(o.sl_hit_msc) for o in rows],
            [o.first_hit for o in rows], [_ms(o.first_hit_msc) for o in rows], [o.mae for o in rows],
            [int(o.ticks) for o in rows],
        ]
        await self._session.insert_columns("signal_outcomes", SIGNAL_OUTCOMES_COLUMNS, columns)

    def _origin(self, item: int) -> RawRecord | None:
        return self._origins[item]

    def _clear(self) -> None:
        self._rows = []
        self._origins = []


def _ms(value: float | None) -> int | None:
    return None if value is None else int(value)


@dataclass
class SeriesPlan:
    """The outcomes pending bars of a series make due: those ending in (``lo``, ``hi``] that are not stored yet
    (``lo``: the newest bar end seen before, or -1 for a series this process sees first), and those ending in one
    of the ``recompute`` ranges, stored or not (around the ends of bars that may have been amended)."""

    lo: int
    hi: int
    recompute: list[tuple[int, int]]

    @property
    def recompute_span(self) -> tuple[int, int]:
        """(lo, hi] covering every recompute range; (0, 0] (empty) without any."""
        return (self.recompute[0][0], self.recompute[-1][1]) if self.recompute else (0, 0)

    def recomputes(self, end: int) -> bool:
        i = bisect.bisect_left(self.recompute, (end,)) - 1  # the last range starting before end
        return i >= 0 and self.recompute[i][0] < end <= self.recompute[i][1]


@dataclass
class _Candidate:
    signal: StoredSignal
    horizon: Timeframe
    origin: RawRecord | None


class OutcomeBuilder(ItemSink[SignalOutcome]):
    """Decides which outcomes are due (bars and signals consumed, see the module docstring), computes, publishes.

    ``publisher`` None: outcomes are not published; ``rows`` None: not stored (a replay of some roles only).
    ``chunk``: most windows computed by one query.
    """

    def __init__(self, session: AnalyticsSession, publisher: TopicPublisher | None, rows: OutcomeRows | None,
                 horizons: Sequence[Timeframe], lateness_ms: int, *, chunk: int = 500) -> None:
        if not horizons:
            raise ValueError("at least one horizon")
        self._session = session
        self._publisher = publisher
        self._rows = rows
        self._horizons = sorted(horizons)
        self._lateness = lateness_ms
        self._chunk = chunk
        #: per series: pending bars (start, end) -> the record of each, and the newest record of the series
        self._bars: dict[Series, dict[tuple[int, int], RawRecord | None]] = {}
        self._bar_origin: dict[Series, RawRecord | None] = {}
        #: pending signals (tenant, id) -> (series, record)
        self._signals: dict[tuple[str, str], tuple[Series, RawRecord | None]] = {}
        #: per series: the newest bar end this process flushed (its outcomes up to there are written)
        self._seen: dict[Series, int] = {}
        self._derived: list[SignalOutcome] = []
        self._origins: dict[OutcomeKey, RawRecord | None] = {}
        self._hashes: dict[Series, int] = {}  # see _series_hashes

    @property
    def name(self) -> str:
        return "outcomes"

    @property
    def pending(self) -> int:
        return sum(len(bars) for bars in self._bars.values()) + len(self._signals)

    def add_bars(self, bars: Sequence[tuple[RawRecord | None, Candle]]) -> None:
        """Queue stored bars (with the record each came from): they tell which horizons have passed."""
        for record, bar in bars:
            series = (bar.tenant, bar.broker, bar.symbol)
            self._bars.setdefault(series, {})[int(bar.start_ms), int(bar.end_ms)] = record
            self._bar_origin[series] = record

    def add_signals(self, signals: Sequence[tuple[RawRecord | None, Signal]]) -> None:
        """Queue stored signals (with the record each came from): their passed horizons are computed now."""
        for record, s in signals:
            self._signals[s.tenant, s.id] = ((s.tenant, s.broker, s.symbol), record)

    # --- which outcomes are due -------------------------------------------------------------------------

    def plans(self) -> dict[Series, SeriesPlan]:
        """What the pending bars make due, per series (see :class:`SeriesPlan`)."""
        plans: dict[Series, SeriesPlan] = {}
        for series, bars in self._bars.items():
            newest = max(end for _, end in bars)
            seen = self._seen.get(series)
            passed = newest if seen is None else max(seen, newest)
            lo, hi = (-1, newest) if seen is None else (seen, max(seen, newest))
            # a bar not past what was seen may have been amended by a late tick: the bar clock amends only with a
            # tick in [end - lateness, end), which changes only the outcomes ending in (end - lateness, end + lateness)
            around = sorted((max(start, end - self._lateness - 1), min(end + self._lateness, passed))
                            for start, end in bars if seen is None or end <= seen)
            recompute: list[tuple[int, int]] = []
            for a, b in around:
                if a >= b:
                    continue
                if recompute and a <= recompute[-1][1]:
                    recompute[-1] = (recompute[-1][0], max(recompute[-1][1], b))
                else:
                    recompute.append((a, b))
            plans[series] = SeriesPlan(lo, hi, recompute)
        return plans

    async def _from_bars(self, due: dict[OutcomeKey, _Candidate]) -> None:
        plans = self.plans()
        if not plans:
            return
        bounds = [(*series, plan.lo, plan.hi, *plan.recompute_span) for series, plan in sorted(plans.items())]
        since = max(0, min(min(plan.lo, plan.recompute_span[0] if plan.recompute else plan.lo) for plan in plans.values())
                    - self._horizons[-1].ms)
        _, rows = await self._session.query(RANGES_SQL.replace("{db}", self._session.database), {
            "bounds": bounds, "series": sorted(plans), "since": since, "horizons": [h.ms for h in self._horizons],
            "min_h": self._horizons[0].ms, "max_h": self._horizons[-1].ms, "use_done": int(self._rows is not None)})
        for row in rows:
            signal = _stored_signal(row)
            plan = plans[signal.series]
            done = set(row[10] or ()) if self._rows is not None else set()  # this run stores nothing: nothing is done
            for horizon in self._horizons:
                end = signal.time_ms + horizon.ms
                if (plan.lo < end <= plan.hi and horizon.ms not in done) or plan.recomputes(end):
                    due.setdefault((signal.tenant, signal.id, horizon.ms),
                                   _Candidate(signal, horizon, self._bar_origin.get(signal.series)))

    async def _from_signals(self, due: dict[OutcomeKey, _Candidate]) -> None:
        if not self._signals:
            return
        ids = sorted(self._signals)
        series = sorted({series for series, _ in self._signals.values()})
        _, rows = await self._session.query(SIGNALS_SQL.replace("{db}", self._session.database),
                                            {"ids": ids, "series": series})
        for row in rows:
            signal = _stored_signal(row)
            passed, done = int(row[10]), set(row[11] or ())
            if self._rows is None:
                done = set()
            origin = self._signals[signal.tenant, signal.id][1]
            for horizon in self._horizons:
                if signal.time_ms + horizon.ms <= passed and horizon.ms not in done:
                    due.setdefault((signal.tenant, signal.id, horizon.ms), _Candidate(signal, horizon, origin))

    # --- computing them ---------------------------------------------------------------------------------

    async def stats(self, windows: Sequence[tuple[StoredSignal, Timeframe]]) -> dict[OutcomeKey, WindowStats]:
        """The stats of each (signal, horizon) window from the stored ticks: one read of ticks per horizon, the
        windows in chunks of at most ``chunk`` whose signals lie within one horizon of each other (so one read
        spans at most two horizons of ticks), each window then a slice of the arrays."""
        found: dict[OutcomeKey, WindowStats] = {}
        by_horizon: dict[int, list[StoredSignal]] = defaultdict(list)
        for signal, horizon in windows:
            by_horizon[horizon.ms].append(signal)
        for horizon_ms, signals in sorted(by_horizon.items()):
            signals.sort(key=lambda s: (s.time_ms, s.series, s.id))
            chunk: list[StoredSignal] = []
            for s in signals:
                if chunk and (len(chunk) >= self._chunk or s.time_ms - chunk[0].time_ms > horizon_ms):
                    found.update(await self._stats_of(horizon_ms, chunk))
                    chunk = []
                chunk.append(s)
            if chunk:
                found.update(await self._stats_of(horizon_ms, chunk))
        return found

    async def _stats_of(self, horizon_ms: int, signals: Sequence[StoredSignal]) -> dict[OutcomeKey, WindowStats]:
        """The windows of ``signals`` at one horizon, from one read of their series' ticks over the span (one read per
        series if two of them share a hash, ~n²/2^65 for n series)."""
        hashes = await self._series_hashes({s.series for s in signals})
        if len(set(hashes.values())) < len(hashes):
            found: dict[OutcomeKey, WindowStats] = {}
            for one in sorted(hashes):
                found.update(await self._stats_of(horizon_ms, [s for s in signals if s.series == one]))
            return found
        condition, filter_parameters = series_filter(hashes)
        sql = TICKS_SQL.replace("{db}", self._session.database).replace("{series_filter}", condition)
        rows = np.frombuffer(await self._session.query_binary(sql, {
            **filter_parameters, "lo": min(s.time_ms for s in signals), "hi": max(s.time_ms for s in signals) + horizon_ms,
        }), dtype=TICK_ROW)
        of_hash = {h: series for series, h in hashes.items()}
        arrays = {}
        cuts = np.flatnonzero(rows["series_hash"][1:] != rows["series_hash"][:-1]) + 1  # rows come by series
        for part in np.split(rows, cuts) if len(rows) else ():
            arrays[of_hash[int(part["series_hash"][0])]] = SeriesTicks(
                np.ascontiguousarray(part["ms"]), np.ascontiguousarray(part["bid"]), np.ascontiguousarray(part["ask"]))
        return {(s.tenant, s.id, horizon_ms): arrays[s.series].window(s, s.time_ms, s.time_ms + horizon_ms)
                for s in signals if s.series in arrays}

    async def _series_hashes(self, series: Collection[Series]) -> dict[Series, int]:
        """The cityHash64 of each series' names, as :data:`TICKS_SQL` names its rows (asked of the store once)."""
        missing = sorted(set(series) - self._hashes.keys())
        if missing:
            _, rows = await self._session.query(SERIES_HASHES_SQL, {"series": missing})
            for tenant, broker, symbol, series_hash in rows:
                self._hashes[tenant, broker, symbol] = int(series_hash)
        return {one: self._hashes[one] for one in series}

    async def _prepare(self) -> None:
        """Find every outcome due (see the module docstring) and compute it. Idempotent."""
        self._derived, self._origins = [], {}
        if not self._bars and not self._signals:
            return
        due: dict[OutcomeKey, _Candidate] = {}
        await self._from_bars(due)
        await self._from_signals(due)
        if not due:
            return
        stats = await self.stats([(c.signal, c.horizon) for c in due.values()])
        for key in sorted(due):
            candidate = due[key]
            self._derived.append(outcome(candidate.signal, candidate.horizon, stats.get(key, NO_TICKS)))
            self._origins[key] = candidate.origin

    def _items(self) -> list[SignalOutcome]:
        return self._derived

    async def _write(self, items: Sequence[SignalOutcome]) -> None:
        """Publish ``items`` and hand them to the rows sink (stored after the broker acknowledged them)."""
        origins = [self._origins.get(outcome_key(o)) for o in items]
        if self._publisher is not None:
            for o, origin in zip(items, origins):
                await self._publisher.add(OUTCOMES_TOPIC, o.key.encode(), _encoder.encode(o), origin)
        if self._rows is not None:
            self._rows.add(items, origins)

    def _origin(self, item: SignalOutcome) -> RawRecord | None:
        return self._origins.get(outcome_key(item))

    def _clear(self) -> None:
        for series, bars in self._bars.items():
            newest = max(end for _, end in bars)
            self._seen[series] = max(self._seen.get(series, newest), newest)
        self._bars.clear()
        self._bar_origin.clear()
        self._signals.clear()
        self._derived = []
        self._origins = {}
