"""Technical indicators of a bar, as a pure function of the stored bars of its series.

A bar's indicators are computed from **the bar and the ``window_bars`` (W)
bars before it** (fewer when the series has fewer), oldest first, and its VWAP
from **the bars of its trading day up to it**; nothing else. So whoever
computes them (the live ingest stage, after a crash or a redelivery, or a
replay into empty stores) gets the same floating-point values, bit for bit: the
same inputs in the same order through the same operations. The candle builder
(:mod:`pipeline.derive.candles`) reads those bars from ``candles FINAL``.

VWAP's running sums over the day (:class:`VwapSums`) are stored with each bar
(``candles.vwap_sums``), so a bar's VWAP needs only the bar before it: its sums
plus this bar's terms, the same additions in the same order as a pass from the
day's first bar (which is what happens when the sums before are not stored:
bars written before this column existed).

The arithmetic is `talipp <https://pypi.org/project/talipp/>`_'s (SMA, EMA,
RSI, the SMMA of ATR, Bollinger Bands); what is composed here follows
TA-Lib's conventions, against which ``tests/unit/test_indicators.py`` checks
every value (relative difference below 1e-9; for MACD's three, differences of
two EMAs, also 1e-12 of the price level) on random walks and edge cases:

- **SMA(n)**: mean of the last n closes. **EMA(n)**: seeded with the SMA of the
  window's first n closes (as TA-Lib), then ``α = 2 / (n + 1)``. Both need n bars.
- **RSI(14)**: Wilder's smoothing, seeded with the mean gain and loss of the
  window's first 14 changes; needs 15 bars. A window without any change (flat
  prices) gives 50, as MetaTrader's RSI does; TA-Lib gives 0 there (and for
  gain + loss below its zero threshold).
- **MACD(12, 26, 9)**: EMA 12 − EMA 26 of the close, where (as TA-Lib) the fast
  EMA starts with the slow one: seeded with the SMA of the 12 closes ending at
  the 26th bar, not of the first 12. Signal: EMA 9 of the MACD line; histogram:
  line − signal. All three from the 34th bar (TA-Lib's lookback).
- **Bollinger Bands(20, 2)**: SMA 20 ± 2 population standard deviations (TA-Lib's
  BBANDS with its defaults). talipp sums squared deviations from the mean; TA-Lib
  takes E[x²] − E[x]², which loses digits to cancellation (hence the tolerance).
- **ATR(14)**: true range from the second bar of the window on (it needs the
  previous close), its first ATR the mean of the first 14 true ranges, then
  Wilder's smoothing (talipp's SMMA): TA-Lib's convention; needs 15 bars.
  (talipp's own ATR counts the first bar's high − low as a true range and starts
  a bar earlier, so it is not used.)
- **VWAP**: Σ typical price × weight / Σ weight over the bar's trading day
  (:meth:`~pipeline.contracts.timeframes.TradingDays.day_start` of its start),
  typical price (h + l + c) / 3; the weight is the bar's real volume
  (``volume_real``) once the day has any, else its tick count (tick volume, as
  MetaTrader uses for symbols without real volume). TA-Lib has no VWAP: the test
  checks it against a direct computation (numpy). A bar of a day or longer is its
  own session. talipp's VWAP is the same running sums, but it cannot resume from
  stored ones, so the two additions are written here.

A value that is not defined (warm-up, or not finite) is absent from the map.
Recursive indicators (EMA, RSI, MACD, ATR) depend on where the window starts:
with W = 200 the seed's weight left at the last bar is (1 − α)^(W+1−n): about
0.2 % for EMA(50), 1e-6 for RSI(14) and MACD's EMA 26, 1e-8 for EMA(20) — a
definition, not an error, but a value carried over an unbounded history (as
MetaTrader's) differs by up to that share of the seed's error; a larger W
narrows it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from talipp.indicators import BB, EMA, RSI, SMA, SMMA  # type: ignore[import-untyped]  # talipp ships no types

from pipeline.contracts.indicators import (
    ATR_PERIOD,
    BB_DEVIATIONS,
    BB_PERIOD,
    MACD_FAST,
    MACD_SIGNAL,
    MACD_SLOW,
    RSI_PERIOD,
    IndicatorSpec,
)

#: What a flat window's RSI is (no gain and no loss: MetaTrader's convention).
FLAT_RSI = 50.0


@dataclass(frozen=True, slots=True)
class VwapSums:
    """Running sums of a trading day up to a bar: Σ typical price × real volume, Σ real volume, and the same
    with the tick count as the weight. Stored with the bar as ``[price_volume, volume, price_ticks, ticks]``."""

    price_volume: float = 0.0
    volume: float = 0.0
    price_ticks: float = 0.0
    ticks: float = 0.0

    def add(self, bar: BarPoint) -> VwapSums:
        typical = (bar.high + bar.low + bar.close) / 3.0
        return VwapSums(self.price_volume + bar.volume_real * typical, self.volume + bar.volume_real,
                        self.price_ticks + bar.ticks * typical, self.ticks + bar.ticks)

    @property
    def vwap(self) -> float | None:
        """Weighted by real volume once the day has any, else by ticks; None before the day's first bar."""
        if self.volume != 0:
            return self.price_volume / self.volume
        return self.price_ticks / self.ticks if self.ticks != 0 else None

    def stored(self) -> list[float]:
        return [self.price_volume, self.volume, self.price_ticks, self.ticks]

    @classmethod
    def of_stored(cls, values: Sequence[float]) -> VwapSums | None:
        """The sums stored with a bar; None when it has none (an empty array: stored before they were)."""
        return cls(*(float(v) for v in values)) if len(values) == 4 else None


@dataclass(frozen=True, slots=True)
class BarPoint:
    """What the indicators read of a bar (``vwap_sums``: its stored sums, None if unknown or not stored yet)."""

    start_ms: int
    high: float
    low: float
    close: float
    ticks: int
    volume_real: float
    vwap_sums: VwapSums | None = None


def _last(values: Sequence[Any]) -> Any:
    return values[-1] if len(values) else None


def window_values(window: Sequence[BarPoint], spec: IndicatorSpec) -> dict[str, float]:
    """The indicators (but VWAP) of the last bar of ``window``: that bar and the bars before it, oldest first.

    Only defined, finite values; ``window`` is used whole (the caller cuts it to W + 1 bars).
    """
    closes = [bar.close for bar in window]
    n = len(closes)
    found: dict[str, Any] = {}
    for period in spec.sma_periods:
        if n >= period:
            found[f"sma_{period}"] = _last(SMA(period, input_values=closes[-period:]))
    for period in spec.ema_periods:
        if n >= period:
            found[f"ema_{period}"] = _last(EMA(period, input_values=closes))
    if n > RSI_PERIOD:
        rsi = RSI(RSI_PERIOD, input_values=closes)
        flat = rsi.avg_gain[-1] == 0 and rsi.avg_loss[-1] == 0
        found[f"rsi_{RSI_PERIOD}"] = FLAT_RSI if flat else _last(rsi)
    if n >= MACD_SLOW + MACD_SIGNAL - 1:
        fast = EMA(MACD_FAST, input_values=closes[MACD_SLOW - MACD_FAST:])
        slow = EMA(MACD_SLOW, input_values=closes)
        # both first defined at the window's MACD_SLOW-th bar (index MACD_SLOW - 1)
        line = [f - s for f, s in zip(fast.output_values[MACD_FAST - 1:], slow.output_values[MACD_SLOW - 1:])]
        signal = _last(EMA(MACD_SIGNAL, input_values=line))
        if signal is not None:
            found["macd"], found["macd_signal"], found["macd_hist"] = line[-1], signal, line[-1] - signal
    if n >= BB_PERIOD:
        bands = _last(BB(BB_PERIOD, BB_DEVIATIONS, input_values=closes[-BB_PERIOD:]))
        if bands is not None:
            found["bb_upper"], found["bb_middle"], found["bb_lower"] = bands.ub, bands.cb, bands.lb
    if n > ATR_PERIOD:
        true_ranges = [max(bar.high - bar.low, abs(bar.high - previous.close), abs(bar.low - previous.close))
                       for previous, bar in zip(window, window[1:])]
        found[f"atr_{ATR_PERIOD}"] = _last(SMMA(ATR_PERIOD, input_values=true_ranges))
    return {name: float(value) for name, value in found.items() if value is not None and math.isfinite(value)}


def session_vwaps(bars: Sequence[BarPoint], day_start: Callable[[int], int]) -> list[float | None]:
    """The VWAP of each of ``bars`` (oldest first, every bar of each day from its first) since the start of its
    trading day (``day_start`` of its start), ignoring stored sums: one pass."""
    found = series_vwap_sums(bars, range(len(bars)), day_start, use_stored=False)
    return [found[i].vwap for i in range(len(bars))]


def series_vwap_sums(bars: Sequence[BarPoint], targets: Iterable[int], day_start: Callable[[int], int], *,
                     use_stored: bool = True) -> dict[int, VwapSums]:
    """The day's running sums at each of ``targets`` (indices into ``bars``, one series, oldest first).

    From the stored sums of the nearest bar of the same day before the first target (bars from the first target on
    are being computed: whatever is stored for them may be stale), else from the day's first bar in ``bars``
    (:func:`needs_whole_day` says when ``bars`` must hold the day whole for that).
    """
    wanted = sorted(set(targets))
    if not wanted:
        return {}
    days = [day_start(bar.start_ms) for bar in bars]
    found: dict[int, VwapSums] = {}
    first = wanted[0]

    def sums_at(i: int) -> VwapSums:
        j = i  # walk back to known sums or the day's first bar, then add forward
        while True:
            if j in found:
                base = found[j]
                break
            stored = bars[j].vwap_sums if use_stored and j < first else None
            if stored is not None:
                base = found[j] = stored
                break
            if j == 0 or days[j - 1] != days[j]:
                base = found[j] = VwapSums().add(bars[j])
                break
            j -= 1
        for k in range(j + 1, i + 1):
            base = found[k] = base.add(bars[k])
        return base

    return {i: sums_at(i) for i in wanted}


def needs_whole_day(bars: Sequence[BarPoint], first: int, day_start: Callable[[int], int]) -> bool:
    """Whether ``bars[first]``'s VWAP starts from the first bar of its day in ``bars``: no bar of that day before it
    has stored sums and ``bars`` holds no bar of an earlier day. Then ``bars`` must hold the day whole (if the
    series has more stored bars of that day than were read, read them)."""
    day = day_start(bars[first].start_ms)
    for j in range(first - 1, -1, -1):
        if day_start(bars[j].start_ms) != day or bars[j].vwap_sums is not None:
            return False
    return True


def series_indicators(bars: Sequence[BarPoint], targets: Iterable[int], spec: IndicatorSpec,
                      day_start: Callable[[int], int]) -> dict[int, tuple[dict[str, float], VwapSums]]:
    """The indicators of ``bars[i]`` and its day's running sums, for each ``i`` of ``targets``: ``bars`` is one
    series on one timeframe, oldest first, holding the W bars before each target (their stored sums where known)
    and, where the bar before a target has no known sums, every bar of the target's day before it."""
    wanted = sorted(set(targets))
    sums = series_vwap_sums(bars, wanted, day_start)
    out = {}
    for i in wanted:
        values = window_values(bars[max(0, i - spec.window_bars):i + 1], spec)
        vwap = sums[i].vwap
        if vwap is not None and math.isfinite(vwap):
            values["vwap"] = vwap
        out[i] = (values, sums[i])
    return out
