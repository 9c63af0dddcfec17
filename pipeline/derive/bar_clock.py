"""Event-time bookkeeping for candles: which bars close, which are amended.

Per (tenant, broker, symbol, timeframe) the clock keeps the event-time
watermark (the newest tick time seen) and the window of the open bar. Windows
are epoch-aligned below a day and follow the broker's trading day from a day
on (:class:`~pipeline.contracts.timeframes.TradingDays`). A tick in
a later window closes the open bar. A tick older than the open bar's window is
*late*: counted, and if the watermark is at most ``lateness_ms`` past it, its
bar is amended (recomputed and upserted); otherwise it is dropped from candles
(it is still stored as a tick).

The clock lives in memory and is not checkpointed: after a restart it starts
from the first tick it sees per key, and reports that key as first seen, so
that the builder recomputes the bar that was open before (bars themselves are
computed from the stored ticks, so nothing is lost: see pipeline.derive.candles).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from pipeline.contracts.timeframes import Timeframe, TradingDays

SeriesKey = tuple[str, str, str]  # tenant, broker, symbol


@dataclass(frozen=True, order=True)
class BarWindow:
    """One bar's identity: series, timeframe and window start (epoch ms)."""

    tenant: str
    broker: str
    symbol: str
    timeframe: str
    start_ms: int


@dataclass
class ClockEvents:
    closed: list[BarWindow] = field(default_factory=list)
    amended: list[BarWindow] = field(default_factory=list)
    #: (timeframe, "amended" | "dropped") -> late ticks
    late: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: series this clock had never seen -> the time of their first tick here
    first_seen: dict[SeriesKey, int] = field(default_factory=dict)


class BarClock:
    def __init__(self, timeframes: Iterable[Timeframe], lateness_ms: int, trading_days: TradingDays | None = None) -> None:
        self.timeframes = tuple(timeframes)
        self.lateness_ms = lateness_ms
        self.trading_days = trading_days or TradingDays()
        self._watermark: dict[SeriesKey, int] = {}
        self._open: dict[tuple[SeriesKey, int], int] = {}  # (series, timeframe ms) -> open window start
        self._shifts: dict[str, tuple[tuple[Timeframe, int], ...]] = {}  # broker -> (timeframe, window shift) each

    def open_start(self, series: SeriesKey, timeframe: Timeframe) -> int | None:
        """Start of the open bar of ``series`` on ``timeframe`` (None before its first tick here)."""
        return self._open.get((series, timeframe.ms))

    def observe_series(self, series: SeriesKey, times: Sequence[float], events: ClockEvents) -> None:
        """Account for ticks of one ``series`` at ``times`` (epoch ms, in offset order).

        The same as :meth:`observe` for each time in turn, but when every time lies
        in the open bar of every timeframe (the usual case within one batch) the
        only effect is a new watermark, which costs one comparison per timeframe
        instead of a walk over the ticks.
        """
        watermark = self._watermark.get(series)
        if watermark is not None:
            lo, hi = min(times), max(times)
            opened = self._open
            if all(opened[series, tf.ms] <= lo and hi < opened[series, tf.ms] + tf.ms for tf in self.timeframes):
                self._watermark[series] = max(watermark, int(hi))
                return
        for time_msc in times:
            self.observe(series, int(time_msc), events)

    def observe(self, series: SeriesKey, time_msc: int, events: ClockEvents) -> None:
        """Account for one tick of ``series`` at ``time_msc``; append what it closes or amends to ``events``."""
        if series not in self._watermark:
            events.first_seen[series] = time_msc
        watermark = max(self._watermark.get(series, time_msc), time_msc)
        self._watermark[series] = watermark
        tenant, broker, symbol = series
        shifts = self._shifts.get(broker)
        if shifts is None:
            shifts = self._shifts[broker] = tuple((tf, self.trading_days.shift_ms(broker, tf)) for tf in self.timeframes)
        for tf, shift in shifts:
            start = time_msc - (time_msc + shift) % tf.ms
            slot = (series, tf.ms)
            current = self._open.get(slot)
            if current is None or start > current:
                if current is not None:
                    events.closed.append(BarWindow(tenant, broker, symbol, tf.name, current))
                self._open[slot] = start
            elif start < current:
                if watermark - time_msc <= self.lateness_ms:
                    events.amended.append(BarWindow(tenant, broker, symbol, tf.name, start))
                    events.late[tf.name, "amended"] += 1
                else:
                    events.late[tf.name, "dropped"] += 1
