"""Bar timeframes such as ``1m``, ``5m``, ``1h``: parsing and epoch-aligned windows."""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_PATTERN = re.compile(r"^([1-9][0-9]{0,3})([smhd])$")


@dataclass(frozen=True, order=True)
class Timeframe:
    """A bar length. Windows are aligned to the Unix epoch (UTC): ``[start, start + ms)``."""

    ms: int
    name: str

    @classmethod
    def parse(cls, text: str) -> Timeframe:
        match = _PATTERN.match(text.strip())
        if not match:
            raise ValueError(f"bad timeframe {text!r}: use a number and s, m, h or d, e.g. 1m, 5m, 1h")
        return cls(int(match.group(1)) * _UNITS_MS[match.group(2)], text.strip())

    def window_start(self, time_msc: int) -> int:
        return time_msc - time_msc % self.ms
