"""Bar timeframes such as ``1m``, ``5m``, ``1h``, ``1d``: parsing, windows, and each broker's trading day.

Windows shorter than a day are aligned to the Unix epoch (UTC). Windows of a
day or longer are aligned to the broker's **trading day**: an MT5 server's day
starts at its own midnight, ``offset`` hours east of UTC (a broker on UTC+2
starts its day at 22:00 UTC), so a ``1d`` bar of that broker is
``[22:00 UTC, 22:00 UTC next day)``. The offset is fixed per broker
(``TICKWIRE_BROKER_DAY_OFFSETS``); daylight saving changes are not followed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

_UNITS_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_PATTERN = re.compile(r"^([1-9][0-9]{0,3})([smhd])$")
#: One day, epoch ms.
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
_BROKER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$(?!\n)")  # the broker pattern of the message schemas
_OFFSET = re.compile(r"^([+-]?)([0-9]{1,2})(?:\.(0|00|25|5|50|75))?$(?!\n)")


@dataclass(frozen=True, order=True)
class Timeframe:
    """A bar length. Windows are ``[start, start + ms)``: epoch-aligned, or trading-day aligned from a day on."""

    ms: int
    name: str

    @classmethod
    def parse(cls, text: str) -> Timeframe:
        match = _PATTERN.match(text.strip())
        if not match:
            raise ValueError(f"bad timeframe {text!r}: use a number and s, m, h or d, e.g. 1m, 5m, 1h, 1d")
        return cls(int(match.group(1)) * _UNITS_MS[match.group(2)], text.strip())

    @property
    def daily(self) -> bool:
        """A day or longer: windows follow the broker's trading day."""
        return self.ms >= DAY_MS

    def window_start(self, time_msc: int, day_offset_ms: int = 0) -> int:
        """Start of the window holding ``time_msc``; ``day_offset_ms``: the broker's day offset (used from a day on)."""
        shift = day_offset_ms if self.ms >= DAY_MS else 0
        shifted = time_msc + shift
        return shifted - shifted % self.ms - shift


def parse_day_offsets(text: str) -> dict[str, int]:
    """``"demo=+2,icmarkets=+3"`` as {broker: offset in ms}. Hours east of UTC, -12..+14, in quarter hours.

    Raises ValueError saying what is wrong (a broker named twice, a bad name or offset).
    """
    offsets: dict[str, int] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        broker, sep, hours = (piece.strip() for piece in part.partition("="))
        if not sep or not _BROKER.search(broker):
            raise ValueError(f"{part!r}: use broker=hours, e.g. demo=+2 (broker names as in the ticks)")
        match = _OFFSET.search(hours)
        if not match:
            raise ValueError(f"{part!r}: the offset must be hours east of UTC, e.g. +2, -5, +5.5")
        value = float(hours)
        if not -12 <= value <= 14:
            raise ValueError(f"{part!r}: the offset must be between -12 and +14 hours")
        if broker in offsets:
            raise ValueError(f"broker {broker!r} is named twice")
        offsets[broker] = round(value * HOUR_MS)
    return offsets


@dataclass(frozen=True)
class TradingDays:
    """Each broker's trading-day offset (ms east of UTC; brokers not named: 0, UTC midnight)."""

    offsets: Mapping[str, int] = field(default_factory=dict)

    def offset_ms(self, broker: str) -> int:
        return self.offsets.get(broker, 0)

    def shift_ms(self, broker: str, timeframe: Timeframe) -> int:
        """The offset ``timeframe``'s windows of ``broker`` are shifted by (0 below a day)."""
        return self.offsets.get(broker, 0) if timeframe.daily else 0

    def window_start(self, broker: str, timeframe: Timeframe, time_msc: int) -> int:
        return timeframe.window_start(time_msc, self.offset_ms(broker))

    def day_start(self, broker: str, time_msc: int) -> int:
        """Start (epoch ms) of ``broker``'s trading day holding ``time_msc``."""
        shifted = time_msc + self.offset_ms(broker)
        return shifted - shifted % DAY_MS - self.offset_ms(broker)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.offsets.items())))
