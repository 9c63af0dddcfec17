"""Every indicator against an independent implementation: TA-Lib (its C library, through the ``TA-Lib`` wheel).

Each bar's indicators are computed from the bar and the ``window_bars`` bars before it
(pipeline.derive.indicators), so TA-Lib is run on exactly that window and its last value compared.

Tolerance (tests/talib_reference.py): relative 1e-9; for the MACD line, signal and histogram (differences of
two EMAs of nearly the same size) 1e-9 relative plus 1e-12 of the price level. Where an indicator is defined
must agree exactly: absent from our map exactly where TA-Lib gives NaN.

Conventions chosen to agree with TA-Lib (see the module docstring of pipeline.derive.indicators): EMA seeded
with the SMA of its first period; RSI with Wilder's smoothing seeded with the mean gain/loss of the first 14
changes; MACD's fast EMA started with the slow one; ATR's first value the mean of the first 14 true ranges
(from the second bar), then Wilder's; Bollinger Bands with the population deviation. Where they differ: a
window without any price change has RSI 50 here (MetaTrader's convention), 0 in TA-Lib. TA-Lib has no VWAP:
it is checked against a direct computation with numpy.
"""

from __future__ import annotations

import dataclasses
import math
import random

import pytest

from pipeline.contracts.indicators import IndicatorSpec
from pipeline.contracts.timeframes import TradingDays
from pipeline.derive.indicators import (
    FLAT_RSI,
    BarPoint,
    VwapSums,
    many_series_indicators,
    needs_whole_day,
    series_indicators,
    series_vwap_sums,
    session_vwaps,
    window_values,
)
from tests.talib_reference import assert_agrees, reference_vwap, talib_values

MINUTE = 60_000
HOUR = 3_600_000
T0 = 1_763_899_200_000  # 2025-11-23 12:00 UTC


def walk(n: int, seed: int, start: float = 1.1, sigma: float = 1e-3, step_ms: int = MINUTE) -> list[BarPoint]:
    """A random walk of ``n`` bars: open at the previous close, high/low around open and close."""
    rng = random.Random(seed)
    bars, price = [], start
    for i in range(n):
        opened = price
        price *= math.exp(rng.gauss(0, sigma))
        high = max(opened, price) * (1 + abs(rng.gauss(0, sigma / 3)))
        low = min(opened, price) * (1 - abs(rng.gauss(0, sigma / 3)))
        bars.append(BarPoint(T0 + i * step_ms, high, low, price, rng.randint(1, 40), float(rng.randint(0, 9))))
    return bars


def check_every_bar(bars: list[BarPoint], spec: IndicatorSpec) -> int:
    """Compare every bar's indicators with TA-Lib's on the same window; the number of values compared."""
    compared = 0
    for i in range(len(bars)):
        window = bars[max(0, i - spec.window_bars):i + 1]
        ours, reference = window_values(window, spec), talib_values(window, spec)
        assert_agrees(ours, reference, window, f"bar {i}")
        compared += len(ours)
    return compared


@pytest.mark.parametrize(("seed", "start", "sigma"), [
    (1, 1.1, 1e-3),        # EURUSD-like minutes
    (2, 2650.0, 2e-3),     # XAUUSD
    (3, 91_000.0, 5e-3),   # BTCUSD, a volatile hour
    (4, 0.00012, 1e-2),    # a tiny price, a large move
    (5, 150.0, 1e-5),      # nearly flat
])
def test_every_indicator_agrees_with_talib_on_random_walks(seed: int, start: float, sigma: float) -> None:
    spec = IndicatorSpec(sma_periods=(5, 20, 50), ema_periods=(9, 20, 50), window_bars=200)
    bars = walk(320, seed, start, sigma)  # past the window: later bars see only their last 201
    assert check_every_bar(bars, spec) > 3_000


def test_a_shorter_window_and_other_periods_agree_too() -> None:
    spec = IndicatorSpec(sma_periods=(2, 100), ema_periods=(3, 60), window_bars=60)
    check_every_bar(walk(150, 8), spec)


def test_fewer_bars_than_a_period_leave_it_absent_and_none_is_nan() -> None:
    spec = IndicatorSpec()
    bars = walk(40, 9)
    expected_first = {"sma_20": 20, "ema_20": 20, "bb_upper": 20, "rsi_14": 15, "atr_14": 15, "macd": 34,
                      "macd_signal": 34, "macd_hist": 34, "sma_50": None, "ema_50": None}
    for n in range(1, len(bars) + 1):
        values = window_values(bars[:n], spec)
        assert all(math.isfinite(v) for v in values.values())
        for name, first in expected_first.items():
            assert (name in values) == (first is not None and n >= first), (n, name)
    assert window_values([], spec) == {}


def test_gaps_in_price_and_in_time() -> None:
    """A price gap (the true range reaches the previous close) and bars far apart in time (the window is the bars
    before, however far back they lie) change nothing in the agreement."""
    bars = walk(120, 10)
    gapped = []
    for i, bar in enumerate(bars):
        jump = 1.05 if i >= 60 else 1.0  # a 5 % gap up at bar 60 (its low above the previous close)
        start = bar.start_ms + (3 * 24 * HOUR if i >= 90 else 0)  # a weekend without bars before bar 90
        gapped.append(BarPoint(start, bar.high * jump, bar.low * jump, bar.close * jump, bar.ticks, bar.volume_real))
    spec = IndicatorSpec()
    check_every_bar(gapped, spec)
    window = gapped[60 - 20:61]
    assert window_values(window, spec)["atr_14"] > window_values(gapped[39:60], spec)["atr_14"] * 2


def test_flat_prices() -> None:
    """No change at all: averages and bands are the price, ATR 0 (all as TA-Lib); RSI is 50 here (MetaTrader's
    convention for no gain and no loss), where TA-Lib answers 0."""
    flat = [BarPoint(T0 + i * MINUTE, 1.25, 1.25, 1.25, 1, 0.0) for i in range(60)]
    spec = IndicatorSpec()
    ours, reference = window_values(flat, spec), talib_values(flat, spec)
    assert ours["rsi_14"] == FLAT_RSI and reference["rsi_14"] == 0.0
    del ours["rsi_14"], reference["rsi_14"]
    assert_agrees(ours, reference, flat, "flat")
    assert ours["bb_upper"] == ours["bb_lower"] == ours["sma_20"] == 1.25 and ours["atr_14"] == 0.0
    assert ours["macd"] == ours["macd_signal"] == ours["macd_hist"] == 0.0


def test_only_gains_or_only_losses_give_rsi_100_or_0_as_talib() -> None:
    up = [BarPoint(T0 + i * MINUTE, 1 + i * 1e-3, 1 + i * 1e-3, 1 + i * 1e-3, 1, 0.0) for i in range(30)]
    down = [BarPoint(b.start_ms, 2 - b.close, 2 - b.close, 2 - b.close, 1, 0.0) for b in up]
    for bars, rsi in ((up, 100.0), (down, 0.0)):
        ours = window_values(bars, IndicatorSpec())
        assert ours["rsi_14"] == pytest.approx(rsi, abs=1e-9)
        assert_agrees(ours, talib_values(bars, IndicatorSpec()), bars, "monotonic")


def test_vwap_resets_at_the_brokers_day_start_and_weighs_by_volume_or_ticks() -> None:
    days = TradingDays({"demo": 2 * HOUR})
    rng = random.Random(12)
    bars = []
    for i, bar in enumerate(walk(180, 12, step_ms=20 * MINUTE)):  # 60 hours: three trading days of demo
        start = T0 + i * 20 * MINUTE
        volume = float(rng.randint(1, 9)) if start >= T0 + 40 * HOUR else 0.0  # the last day has real volume
        bars.append(BarPoint(start, bar.high, bar.low, bar.close, bar.ticks, volume))
    def day_start(t: int) -> int:
        return days.day_start("demo", t)
    ours = session_vwaps(bars, day_start)
    expected = reference_vwap(bars, day_start)
    assert all(v is not None and abs(v - e) <= 1e-12 * abs(e) for v, e in zip(ours, expected))
    first_of_day = [i for i in range(1, len(bars)) if day_start(bars[i].start_ms) != day_start(bars[i - 1].start_ms)]
    assert [(bars[i].start_ms - 22 * HOUR) % (24 * HOUR) for i in first_of_day] == [0, 0, 0]  # 22:00 UTC
    for i in first_of_day:  # a day's first VWAP is its first bar's typical price
        b = bars[i]
        assert ours[i] == pytest.approx((b.high + b.low + b.close) / 3, rel=1e-15)


def test_a_bars_values_depend_only_on_its_window_and_its_day_so_any_batching_gives_the_same_bits() -> None:
    """Live (one bar at a time: the W bars before it read back with the VWAP sums stored with them), in a backlog
    after a restart (a few bars at once), in a replay into empty stores (everything at once, nothing stored), and
    after an upgrade (bars stored without sums: the day read whole): the same values and sums, exactly."""
    spec = IndicatorSpec(window_bars=50)
    days = TradingDays({"demo": 3 * HOUR})
    bars = walk(700, 13, step_ms=5 * MINUTE)  # 58 hours of 5-minute bars: days of 288 bars, far longer than W

    def day_start(t: int) -> int:
        return days.day_start("demo", t)

    replay = series_indicators(bars, range(len(bars)), spec, day_start)
    stored: list[BarPoint] = []
    for i, bar in enumerate(bars):
        history = stored[max(0, i - spec.window_bars):]  # what the history query reads: the W bars before
        live = series_indicators([*history, bar], [len(history)], spec, day_start)[len(history)]
        assert live == replay[i], i  # == on floats: bit for bit
        stored.append(dataclasses.replace(bar, vwap_sums=live[1]))
    assert all(set(values) == set(spec.names) for values, _ in list(replay.values())[60:])
    for lo in range(100, 693, 7):  # a backlog: 7 bars at once, the W before them from the store
        batch = series_indicators(stored[lo - spec.window_bars:lo] + bars[lo:lo + 7], range(50, 57), spec, day_start)
        assert [batch[i] for i in range(50, 57)] == [replay[i] for i in range(lo, lo + 7)]

    # bars stored before the sums existed: the day is read whole, and the values are the same
    old = [dataclasses.replace(bar, vwap_sums=None) for bar in stored]
    i = 500
    assert needs_whole_day(old[i - spec.window_bars:i + 1], spec.window_bars, day_start)
    begin = next(j for j, b in enumerate(bars) if day_start(b.start_ms) == day_start(bars[i].start_ms))
    assert series_indicators(old[begin:i] + [bars[i]], [i - begin], spec, day_start)[i - begin] == replay[i]

    # bars older than the window and the day change nothing
    older = [BarPoint(b.start_ms - 700 * 5 * MINUTE, b.high * 2, b.low * 2, b.close * 2, 7, 5.0) for b in bars]
    again = series_indicators(older + bars, range(1000, 1100), spec, day_start)
    assert again == {i + 700: v for i, v in replay.items() if 300 <= i < 400}


def test_stored_sums_continue_the_day_and_a_new_day_starts_afresh() -> None:
    days = TradingDays({"demo": 2 * HOUR})
    bars = walk(30, 14, step_ms=30 * MINUTE)  # 12:00 to 03:00 UTC: crosses 22:00, demo's day start

    def day_start(t: int) -> int:
        return days.day_start("demo", t)

    sums = series_vwap_sums(bars, range(30), day_start)
    new_day = next(i for i in range(1, 30) if day_start(bars[i].start_ms) != day_start(bars[i - 1].start_ms))
    assert sums[new_day] == VwapSums().add(bars[new_day])
    assert sums[new_day + 1] == sums[new_day].add(bars[new_day + 1])
    # stored sums are used up to the first bar being computed, never from it on
    poisoned = [dataclasses.replace(b, vwap_sums=VwapSums(1e9, 1.0, 1e9, 1.0)) for b in bars]
    assert series_vwap_sums(poisoned, range(new_day, 30), day_start) == {i: sums[i] for i in range(new_day, 30)}
    assert series_vwap_sums(poisoned, [new_day + 3], day_start)[new_day + 3] != sums[new_day + 3]
    assert VwapSums.of_stored([]) is None and VwapSums.of_stored(sums[5].stored()) == sums[5]


@pytest.mark.parametrize("batch_rows", [4_096, 3])
def test_many_series_in_one_batch_give_each_windows_own_values_bit_for_bit(batch_rows: int,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows of every length (warm-up, short series, full windows) and of several series computed as one batch
    (or as batches of 3 rows): each gets exactly what it gets alone (rows never mix, padding is never read into a
    value)."""
    monkeypatch.setattr("pipeline.derive.indicators.BATCH_ROWS", batch_rows)
    spec = IndicatorSpec(window_bars=60)
    series = [walk(5, 20), walk(45, 21, 2650.0, 2e-3), walk(140, 22, 91_000.0, 5e-3), walk(1, 23)]

    def day_start(t: int) -> int:
        return t - t % (24 * HOUR)

    targets = [range(5), range(0, 45, 2), [3, 34, 61, 100, 139], [0]]
    batch = many_series_indicators([(bars, wanted, day_start) for bars, wanted in zip(series, targets)], spec)
    for bars, wanted, found in zip(series, targets, batch):
        assert sorted(found) == sorted(wanted)
        for i in wanted:
            alone = window_values(bars[max(0, i - spec.window_bars):i + 1], spec)
            assert {k: v for k, v in found[i][0].items() if k != "vwap"} == alone, i
            assert found[i] == series_indicators(bars, [i], spec, day_start)[i], i
