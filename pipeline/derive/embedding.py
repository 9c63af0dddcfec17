"""The pattern embedding: a fixed-length, deterministic vector of a recent bar shape.

From the last ``WINDOW_BARS + 1`` closed bars of one series and timeframe:

- 32 log returns of the close, divided by their standard deviation (the shape,
  independent of price level and volatility);
- trend: the window's total log return / (std * sqrt(32));
- range: log of the mean (high - low) / close, relative to the std;
- spread: log1p of the mean spread / close, relative to the std;
- volatility level: log10 of the std of log returns (so calm and wild markets differ).

No model, no randomness: the same bars always give the same vector.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from pipeline.contracts.patterns import DIMENSION, WINDOW_BARS

__all__ = ["DIMENSION", "WINDOW_BARS", "embed"]

_MIN_STD = 1e-12


def embed(closes: Sequence[float], highs: Sequence[float], lows: Sequence[float], spreads: Sequence[float]) -> tuple[tuple[float, ...], float] | None:
    """``(vector, volatility)`` of the last ``WINDOW_BARS + 1`` bars given, or None for a flat window
    (or one whose vector would not be finite)."""
    if len(closes) < WINDOW_BARS + 1:
        raise ValueError(f"need {WINDOW_BARS + 1} bars, got {len(closes)}")
    close = np.asarray(closes[-(WINDOW_BARS + 1):], dtype=np.float64)
    high = np.asarray(highs[-WINDOW_BARS:], dtype=np.float64)
    low = np.asarray(lows[-WINDOW_BARS:], dtype=np.float64)
    spread = np.asarray(spreads[-WINDOW_BARS:], dtype=np.float64)
    returns = np.diff(np.log(close))
    std = float(returns.std())
    if std < _MIN_STD:
        return None  # no movement: no shape to compare
    shape = returns / std
    trend = float(returns.sum()) / (std * math.sqrt(WINDOW_BARS))
    range_level = math.log(max(float(np.mean((high - low) / close[1:])) / std, _MIN_STD))
    spread_level = math.log1p(float(np.mean(spread / close[1:])) / std)
    vol_level = math.log10(std)
    vector = (*map(float, shape), trend, range_level, spread_level, vol_level)
    if not all(math.isfinite(x) for x in vector):
        return None  # extreme bars (e.g. prices near the float limits): no shape to compare
    return vector, std
