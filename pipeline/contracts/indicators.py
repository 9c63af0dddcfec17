"""The indicators carried by every bar (``candle.v2``, ``candles.indicators``, ``/v1/indicators``): names and parameters.

Configurable: the SMA and EMA periods (``TICKWIRE_INDICATOR_SMA_PERIODS``,
``TICKWIRE_INDICATOR_EMA_PERIODS``). Fixed: RSI(14), MACD(12, 26, 9),
Bollinger Bands(20, 2), ATR(14) and the session VWAP. Names:

=============================  ===========================================================
``sma_<n>``, ``ema_<n>``       simple / exponential moving average of the close
``rsi_14``                     relative strength index (Wilder)
``macd``, ``macd_signal``,     MACD line (EMA 12 − EMA 26 of the close), its signal line
``macd_hist``                  (EMA 9 of the MACD line) and histogram (line − signal)
``bb_upper``, ``bb_middle``,   Bollinger Bands: SMA 20 of the close ± 2 population standard
``bb_lower``                   deviations
``atr_14``                     average true range (Wilder)
``vwap``                       volume-weighted average of the typical price (h+l+c)/3 since the
                               start of the bar's trading day
=============================  ===========================================================

How they are computed, and their conventions: :mod:`pipeline.derive.indicators`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RSI_PERIOD = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
BB_PERIOD, BB_DEVIATIONS = 20, 2.0
ATR_PERIOD = 14
#: A name in an indicators map (JSON Schema ``propertyNames`` of ``candle.v2``).
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$(?!\n)"
MAX_PERIOD = 1_000


def parse_periods(text: str) -> tuple[int, ...]:
    """``"20,50"`` as (20, 50): distinct whole numbers 2..1000, in the order given (empty: none)."""
    periods: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not re.fullmatch(r"[0-9]{1,4}", part) or not 2 <= int(part) <= MAX_PERIOD:
            raise ValueError(f"{part!r}: a period is a whole number of bars from 2 to {MAX_PERIOD}")
        if int(part) in periods:
            raise ValueError(f"period {int(part)} is named twice")
        periods.append(int(part))
    return tuple(periods)


@dataclass(frozen=True)
class IndicatorSpec:
    """Which indicators a bar carries, and over how many bars before it they are computed (``window_bars``)."""

    sma_periods: tuple[int, ...] = (20, 50)
    ema_periods: tuple[int, ...] = (20, 50)
    window_bars: int = 200

    @property
    def names(self) -> tuple[str, ...]:
        """Every indicator name, in a fixed order."""
        return (*(f"sma_{n}" for n in self.sma_periods), *(f"ema_{n}" for n in self.ema_periods), f"rsi_{RSI_PERIOD}",
                "macd", "macd_signal", "macd_hist", "bb_upper", "bb_middle", "bb_lower", f"atr_{ATR_PERIOD}", "vwap")

    @property
    def warm_up_bars(self) -> dict[str, int]:
        """Per indicator family, the bars needed before its first value (VWAP: one, from the day's first bar)."""
        return {
            **{f"sma_{n}": n for n in self.sma_periods}, **{f"ema_{n}": n for n in self.ema_periods},
            f"rsi_{RSI_PERIOD}": RSI_PERIOD + 1, "macd_signal": MACD_SLOW + MACD_SIGNAL - 1, "bb": BB_PERIOD,
            f"atr_{ATR_PERIOD}": ATR_PERIOD + 1, "vwap": 1,
        }

    @property
    def longest_warm_up(self) -> tuple[str, int]:
        """The indicator with the longest warm-up, and its length in bars."""
        return max(self.warm_up_bars.items(), key=lambda item: item[1])
