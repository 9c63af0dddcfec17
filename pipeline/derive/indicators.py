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
RSI, the SMMA of ATR, Bollinger Bands), its operations in its order, run with
numpy over every window of a batch at once (:func:`indicator_rows`: a backlog
of thousands of bars costs a few array operations per bar of the window, and
each window's values are the bits talipp gives for it alone); what is
composed here follows TA-Lib's conventions, against which ``tests/unit/test_indicators.py`` checks
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
from typing import Callable, Iterable, Sequence

import numpy as np

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


def _left_sums(columns: np.ndarray) -> np.ndarray:
    """Each row's sum added left to right, as Python's ``sum`` adds (so a row's bits never depend on other rows)."""
    total = columns[:, 0].copy()
    for j in range(1, columns.shape[1]):
        total = total + columns[:, j]
    return total


def _last_columns(values: np.ndarray, ends: np.ndarray, count: int) -> np.ndarray:
    """Per row, the ``count`` values ending at column ``ends[r]`` (exclusive); NaN where a row has fewer."""
    index = ends[:, None] - count + np.arange(count)
    picked = np.take_along_axis(values, np.clip(index, 0, values.shape[1] - 1), axis=1)
    return np.where(index >= 0, picked, np.nan)


def _at(values: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Per row ``r``, ``values[r, columns[r]]``; NaN where that column is negative."""
    picked = values[np.arange(len(columns)), np.clip(columns, 0, None)]
    return np.where(columns >= 0, picked, np.nan)


def _ema(values: np.ndarray, period: int) -> np.ndarray:
    """Each row's EMA at every column: NaN before the ``period``-th value, which is the SMA of the first ``period``;
    then ``α x + (1 − α) previous`` with ``α = 2 / (period + 1)`` (talipp's operations, in its order)."""
    out = np.full(values.shape, np.nan)
    if values.shape[1] < period:
        return out
    mult = 2.0 / (period + 1.0)
    value = _left_sums(values[:, :period]) / period
    out[:, period - 1] = value
    for j in range(period, values.shape[1]):
        value = mult * values[:, j] + (1.0 - mult) * value
        out[:, j] = value
    return out


def _smma(values: np.ndarray, period: int) -> np.ndarray:
    """Each row's Wilder (smoothed) moving average at every column, seeded with the mean of the first ``period``."""
    out = np.full(values.shape, np.nan)
    if values.shape[1] < period:
        return out
    value = _left_sums(values[:, :period]) / period
    out[:, period - 1] = value
    for j in range(period, values.shape[1]):
        value = (value * (period - 1) + values[:, j]) / period
        out[:, j] = value
    return out


def _rsi(closes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Each row's RSI(14) at its last bar (Wilder's smoothing seeded with the mean gain and loss of the first 14
    changes; a window without any change: :data:`FLAT_RSI`); NaN for rows of 14 bars or fewer."""
    p = RSI_PERIOD
    changes = closes[:, 1:] - closes[:, :-1]
    ups = np.where(changes > 0, changes, 0.0)
    downs = np.where(changes < 0, -changes, 0.0)
    gains = np.full(changes.shape, np.nan)
    losses = np.full(changes.shape, np.nan)
    gain = _left_sums(ups[:, :p - 1]) / (p - 1)
    loss = _left_sums(downs[:, :p - 1]) / (p - 1)
    for j in range(p - 1, changes.shape[1]):
        gain = (gain * (p - 1) + ups[:, j]) / p
        loss = (loss * (p - 1) + downs[:, j]) / p
        gains[:, j], losses[:, j] = gain, loss
    last = np.where(lengths > p, lengths - 2, -1)
    gain, loss = _at(gains, last), _at(losses, last)
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = np.where(loss == 0, 100.0, 100.0 - 100.0 / (1.0 + gain / loss))
    return np.where((gain == 0) & (loss == 0), FLAT_RSI, rsi)


def indicator_rows(closes: np.ndarray, highs: np.ndarray, lows: np.ndarray, lengths: np.ndarray,
                   spec: IndicatorSpec) -> list[dict[str, float]]:
    """The indicators (but VWAP) of the last bar of each window: row ``r`` of the ``k × m`` matrices is one window,
    oldest first, in its first ``lengths[r]`` columns (the rest is padding, never read into a value). Only
    defined, finite values.

    Every row is computed alone, element by element, in the order talipp computes it (sums from the left, the
    same recurrences), and a window starts at column 0 whatever its length: the same window gives the same bits
    whatever else is in the batch.
    """
    rows = len(lengths)
    if not closes.shape[1]:
        return [{} for _ in range(rows)]
    last = lengths - 1
    columns: dict[str, np.ndarray] = {}
    for period in spec.sma_periods:
        columns[f"sma_{period}"] = _left_sums(_last_columns(closes, lengths, period)) / period
    for period in spec.ema_periods:
        columns[f"ema_{period}"] = _at(_ema(closes, period), last)
    if closes.shape[1] > RSI_PERIOD:
        columns[f"rsi_{RSI_PERIOD}"] = _rsi(closes, lengths)
    if closes.shape[1] >= MACD_SLOW + MACD_SIGNAL - 1:
        # as TA-Lib, the fast EMA starts with the slow one: both first defined at the window's MACD_SLOW-th bar
        fast = _ema(closes[:, MACD_SLOW - MACD_FAST:], MACD_FAST)[:, MACD_FAST - 1:]
        line = fast - _ema(closes, MACD_SLOW)[:, MACD_SLOW - 1:]
        signal = _ema(line, MACD_SIGNAL)
        at = np.where(lengths >= MACD_SLOW + MACD_SIGNAL - 1, last - (MACD_SLOW - 1), -1)
        macd, macd_signal = _at(line, at), _at(signal, at)
        columns["macd"], columns["macd_signal"], columns["macd_hist"] = macd, macd_signal, macd - macd_signal
    recent = _last_columns(closes, lengths, BB_PERIOD)
    middle = _left_sums(recent) / BB_PERIOD
    deviations = recent - middle[:, None]
    deviation = np.sqrt(_left_sums(deviations * deviations) / BB_PERIOD)
    columns["bb_upper"] = middle + BB_DEVIATIONS * deviation
    columns["bb_middle"] = middle
    columns["bb_lower"] = middle - BB_DEVIATIONS * deviation
    if closes.shape[1] > ATR_PERIOD:
        previous = closes[:, :-1]
        high, low = highs[:, 1:], lows[:, 1:]
        true_ranges = np.maximum(np.maximum(high - low, np.abs(high - previous)), np.abs(low - previous))
        columns[f"atr_{ATR_PERIOD}"] = _at(_smma(true_ranges, ATR_PERIOD), np.where(lengths > ATR_PERIOD, last - 1, -1))
    names = [name for name in spec.names if name in columns]
    values = [columns[name].tolist() for name in names]
    return [{name: value for name, value in zip(names, row) if math.isfinite(value)} for row in zip(*values)]


def window_values(window: Sequence[BarPoint], spec: IndicatorSpec) -> dict[str, float]:
    """The indicators (but VWAP) of the last bar of ``window``: that bar and the bars before it, oldest first.

    Only defined, finite values; ``window`` is used whole (the caller cuts it to W + 1 bars).
    """
    if not window:
        return {}
    closes, highs, lows = _columns(window)
    return indicator_rows(closes[None, :], highs[None, :], lows[None, :], np.array([len(window)]), spec)[0]


def _columns(bars: Sequence[BarPoint]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closes, highs and lows of ``bars`` as arrays."""
    return (np.fromiter((bar.close for bar in bars), np.float64, len(bars)),
            np.fromiter((bar.high for bar in bars), np.float64, len(bars)),
            np.fromiter((bar.low for bar in bars), np.float64, len(bars)))


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
    return many_series_indicators([(bars, targets, day_start)], spec)[0]


#: Most windows in one batch of :func:`indicator_rows` (its matrices are rows x W floats, a few of them at once).
BATCH_ROWS = 4_096

#: One series for :func:`many_series_indicators`: its bars (oldest first), the targets, its trading day's start.
SeriesRequest = tuple[Sequence[BarPoint], Iterable[int], Callable[[int], int]]


def many_series_indicators(requests: Sequence[SeriesRequest],
                           spec: IndicatorSpec) -> list[dict[int, tuple[dict[str, float], VwapSums]]]:
    """:func:`series_indicators` of each request, computed together: the windows of every target of every series
    (``bars[max(0, i − W):i + 1]``) are the rows of one batch of :func:`indicator_rows`, so a backlog of many bars
    costs a few array operations per step of the window, not Python work per bar and step. Values are per window
    (see :func:`indicator_rows`): batching changes no bit."""
    wanted = [sorted(set(targets)) for _, targets, _ in requests]
    arrays = [_columns(bars) for bars, _, _ in requests]
    members = [(r, i) for r, targets in enumerate(wanted) for i in targets]
    values: dict[tuple[int, int], dict[str, float]] = {}
    for first in range(0, len(members), BATCH_ROWS):  # bounded memory: a few (rows x W) matrices at a time
        batch = members[first:first + BATCH_ROWS]
        lengths = np.array([min(i, spec.window_bars) + 1 for _, i in batch], dtype=np.int64)
        width = int(lengths.max())
        closes, highs, lows = (np.full((len(batch), width), np.nan) for _ in range(3))
        for k, ((r, i), n) in enumerate(zip(batch, lengths.tolist())):
            for matrix, array in zip((closes, highs, lows), arrays[r]):
                matrix[k, :n] = array[i + 1 - n:i + 1]
        values.update(zip(batch, indicator_rows(closes, highs, lows, lengths, spec)))
    out = []
    for r, ((bars, _, day_start), targets) in enumerate(zip(requests, wanted)):
        sums = series_vwap_sums(bars, targets, day_start)
        found: dict[int, tuple[dict[str, float], VwapSums]] = {}
        for i in targets:
            row = values[r, i]
            vwap = sums[i].vwap
            if vwap is not None and math.isfinite(vwap):
                row["vwap"] = vwap
            found[i] = (row, sums[i])
        out.append(found)
    return out
