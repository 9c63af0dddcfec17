"""Independent references for the indicators (pipeline.derive.indicators): TA-Lib (its C library, through the
``TA-Lib`` wheel) and, for VWAP, which TA-Lib lacks, a direct numpy computation. Shared by the unit and stack tests.

Tolerance: |ours − TA-Lib| ≤ 1e-9 × |TA-Lib|. The MACD line, signal and histogram are differences of two EMAs of
nearly the same size, so their rounding is that of the EMAs (a few ulps of the price), not of the difference: for
them, |ours − TA-Lib| ≤ 1e-9 × |TA-Lib| + 1e-12 × the window's price level. A convention difference (another seed,
another first value) shows up orders of magnitude above both. Where an indicator is defined must agree exactly:
absent from our map exactly where TA-Lib gives NaN.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import talib

from pipeline.contracts.indicators import IndicatorSpec

RELATIVE = 1e-9
MACD_LEVEL = 1e-12
MACD_NAMES = ("macd", "macd_signal", "macd_hist")


def talib_values(window: Sequence[Any], spec: IndicatorSpec) -> dict[str, float]:
    """TA-Lib's indicators (but VWAP) of the last bar of ``window`` (NaN: not defined)."""
    close = np.array([b.close for b in window], dtype=float)
    high = np.array([b.high for b in window], dtype=float)
    low = np.array([b.low for b in window], dtype=float)
    found = {f"sma_{n}": talib.SMA(close, n)[-1] for n in spec.sma_periods}
    found |= {f"ema_{n}": talib.EMA(close, n)[-1] for n in spec.ema_periods}
    found["rsi_14"] = talib.RSI(close, 14)[-1]
    macd, signal, hist = talib.MACD(close, 12, 26, 9)
    found |= {"macd": macd[-1], "macd_signal": signal[-1], "macd_hist": hist[-1]}
    upper, middle, lower = talib.BBANDS(close, 20, 2.0, 2.0, 0)
    found |= {"bb_upper": upper[-1], "bb_middle": middle[-1], "bb_lower": lower[-1]}
    found["atr_14"] = talib.ATR(high, low, close, 14)[-1]
    return {name: float(value) for name, value in found.items()}


def assert_agrees(ours: dict[str, float], reference: dict[str, float], window: Sequence[Any], where: str) -> None:
    assert "vwap" not in ours
    assert set(ours) == {name for name, value in reference.items() if not math.isnan(value)}, where
    level = max(abs(b.close) for b in window)
    for name, expected in reference.items():
        if math.isnan(expected):
            continue
        allowed = RELATIVE * abs(expected) + (MACD_LEVEL * level if name in MACD_NAMES else 0.0)
        assert abs(ours[name] - expected) <= allowed, (where, name, ours[name], expected)


def reference_vwap(bars: Sequence[Any], day_start: Callable[[int], int]) -> list[float]:
    """Per bar, Σ tp·w / Σ w over its day so far: numpy cumulative sums; w the real volume once the day has any,
    else the tick count."""
    out = []
    days = [day_start(b.start_ms) for b in bars]
    for i in range(len(bars)):
        day = [b for b, d in zip(bars[:i + 1], days[:i + 1]) if d == days[i]]
        typical = np.array([(b.high + b.low + b.close) / 3 for b in day])
        volume = np.array([b.volume_real for b in day])
        weights = volume if volume.sum() > 0 else np.array([float(b.ticks) for b in day])
        out.append(float(np.cumsum(typical * weights)[-1] / np.cumsum(weights)[-1]))
    return out
