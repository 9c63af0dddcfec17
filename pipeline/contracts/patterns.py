"""The shape of a pattern embedding: how many bars a window has and how long its vector is.

The vector role's schema (a fixed dimension) depends on it, so it is a
contract: changing it means a new vector schema (see pipeline.derive.embedding).
"""

from __future__ import annotations

#: Log returns per window (a window spans ``WINDOW_BARS + 1`` closed bars).
WINDOW_BARS = 32
#: The 32 normalised returns, then trend, range level, spread level, volatility level.
DIMENSION = WINDOW_BARS + 4
