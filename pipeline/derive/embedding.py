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
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from pipeline.contracts.patterns import DIMENSION, WINDOW_BARS

__all__ = ["DIMENSION", "WINDOW_BARS", "embed", "embed_windows"]

_MIN_STD = 1e-12


def embed(closes: Sequence[float], highs: Sequence[float], lows: Sequence[float], spreads: Sequence[float]) -> tuple[tuple[float, ...], float] | None:
    """``(vector, volatility)`` of the last ``WINDOW_BARS + 1`` bars given, or None for a flat window
    (or one whose vector would not be finite)."""
    if len(closes) < WINDOW_BARS + 1:
        raise ValueError(f"need {WINDOW_BARS + 1} bars, got {len(closes)}")
    def aligned(values: Sequence[float]) -> npt.NDArray[np.float64]:  # the window's first bar: only its close is read
        return np.concatenate(([np.nan], np.asarray(values[-WINDOW_BARS:], dtype=np.float64)))

    close = np.asarray(closes[-(WINDOW_BARS + 1):], dtype=np.float64)
    return embed_windows(close, aligned(highs), aligned(lows), aligned(spreads), [WINDOW_BARS])[0]


def embed_windows(closes: npt.NDArray[np.float64], highs: npt.NDArray[np.float64], lows: npt.NDArray[np.float64],
                  spreads: npt.NDArray[np.float64], ends: Sequence[int]) -> list[tuple[tuple[float, ...], float] | None]:
    """:func:`embed` of the window ending at each index of ``ends`` (each at least ``WINDOW_BARS``) of one series'
    bar arrays (oldest first, index ``i`` of each the same bar), all windows at once: the same numbers as one at a time (every step is per row;
    the scalar logarithms are Python's, as in :func:`embed`)."""
    if not len(ends):
        return []
    rows = np.asarray(ends) - WINDOW_BARS  # each window: bars rows[r] .. rows[r] + WINDOW_BARS
    close = sliding_window_view(closes, WINDOW_BARS + 1)[rows]
    high = sliding_window_view(highs, WINDOW_BARS)[rows + 1]
    low = sliding_window_view(lows, WINDOW_BARS)[rows + 1]
    spread = sliding_window_view(spreads, WINDOW_BARS)[rows + 1]
    returns = np.diff(np.log(close), axis=1)
    std = returns.std(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        shape = returns / std[:, None]
        ranges = np.mean((high - low) / close[:, 1:], axis=1)
        spreads_mean = np.mean(spread / close[:, 1:], axis=1)
    totals = returns.sum(axis=1)
    found: list[tuple[tuple[float, ...], float] | None] = []
    for r, (s, total, range_mean, spread_mean) in enumerate(zip(std.tolist(), totals.tolist(), ranges.tolist(),
                                                               spreads_mean.tolist())):
        if s < _MIN_STD:
            found.append(None)  # no movement: no shape to compare
            continue
        trend = total / (s * math.sqrt(WINDOW_BARS))
        range_level = math.log(max(range_mean / s, _MIN_STD))
        spread_level = math.log1p(spread_mean / s)
        vector = (*shape[r].tolist(), trend, range_level, spread_level, math.log10(s))
        if not all(math.isfinite(x) for x in vector):
            found.append(None)  # extreme bars (e.g. prices near the float limits): no shape to compare
            continue
        found.append((vector, s))
    return found
