"""Pattern embeddings and their forward returns, derived from stored closed bars.

The patterns stage feeds it the bars of ``candles.v1``. For every closed (or
amended) bar the builder loads the recent bars of its series from ClickHouse
``candles FINAL`` (a bar is on the topic only once it is stored) and, where 33
bars are known, embeds the window ending with that bar (pipeline.derive.embedding)
and upserts it into the vector role under a deterministic id (tenant, broker,
symbol, timeframe, window end). It also records the forward return of the
window that ended ``horizon`` bars earlier: log(close now / close then).
Everything is a pure function of stored bars, so redelivery and replay rewrite
the same vectors.

A flush first derives every write (patterns, then forward returns) from the
pending bars, then writes them; each derived write remembers the ``candles.v1``
record of the newest pending bar at or before its window's end, so if the
vector store refuses one window, that record alone is dead-lettered.

Writes go in chunks of at most :data:`WRITE_CHUNK` (each one atomic upsert),
:data:`WRITE_CONCURRENCY` at a time: a backlog that closes tens of thousands of
bars in one checkpoint never becomes one statement longer than the store's
statement timeout (which would be retried whole, for ever), and the vector
store indexes two chunks at once (HNSW upkeep is the store's CPU, not the
worker's). The patterns of a flush are all written before its forward returns
(a forward return updates a stored pattern). A failed chunk fails the flush,
which is retried whole: chunks already written are rewritten as no-ops.
"""

from __future__ import annotations

import asyncio
import bisect
import math
from collections import defaultdict
from typing import Any, Awaitable, Callable, Sequence, TypeVar

import numpy as np

from pipeline.contracts.schemas import Candle
from pipeline.contracts.timeframes import Timeframe
from pipeline.core.codec import RawRecord
from pipeline.derive.embedding import WINDOW_BARS, embed_windows
from pipeline.sinks.base import ItemSink
from pipeline.stores.analytics import AnalyticsSession
from pipeline.stores.series_filter import series_filter
from pipeline.stores.vectors.base import Pattern, PatternKey, VectorStore

#: Most patterns (or forward returns) in one vector-store write.
WRITE_CHUNK = 1_000
#: Chunks written at once (each on a connection of its own).
WRITE_CONCURRENCY = 2

# Per series: every bar from ``lo`` to ``hi``, and the ``before`` bars just before ``lo`` (however far back
# they lie: bars after a gap are still consecutive bars of the window), oldest first.
HISTORY_SQL = """
WITH bars AS (
    SELECT tenant, broker, symbol, toUnixTimestamp64Milli(start) AS start_ms, toUnixTimestamp64Milli(end) AS end_ms,
           high, low, close, spread_avg
    FROM {db}.candles FINAL
    WHERE timeframe = {tf:String} AND {series_filter}
      AND start <= fromUnixTimestamp64Milli({hi:Int64})
)
SELECT * FROM (
    SELECT * FROM bars WHERE start_ms >= {lo:Int64}
    UNION ALL
    SELECT * FROM (SELECT * FROM bars WHERE start_ms < {lo:Int64}
                   ORDER BY tenant, broker, symbol, start_ms DESC LIMIT {before:UInt32} BY tenant, broker, symbol)
)
ORDER BY tenant, broker, symbol, start_ms
"""

T = TypeVar("T")
Series = tuple[str, str, str]
#: A pending bar: (timeframe, series, bar start).
PendingBar = tuple[str, Series, int]
#: A derived write: a pattern upsert (forward return None) or a forward return of a stored pattern.
DerivedWrite = tuple[PatternKey, Pattern | None, float | None]


class PatternBuilder(ItemSink[DerivedWrite]):
    def __init__(self, session: AnalyticsSession, vectors: VectorStore, timeframes: Sequence[Timeframe],
                 horizon_bars: int) -> None:
        self._session = session
        self._vectors = vectors
        self._timeframes = {tf.name: tf for tf in timeframes}
        self._horizon = horizon_bars
        self._pending: dict[PendingBar, RawRecord | None] = {}
        self._derived: list[DerivedWrite] = []
        self._origins: dict[PatternKey, RawRecord | None] = {}

    @property
    def name(self) -> str:
        return "patterns"

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add_bars(self, bars: Sequence[tuple[RawRecord | None, Candle]]) -> None:
        """Queue closed bars (with the record each came from); bars of unknown timeframes are ignored."""
        for record, bar in bars:
            if bar.timeframe in self._timeframes:
                self._pending[bar.timeframe, (bar.tenant, bar.broker, bar.symbol), int(bar.start_ms)] = record

    async def _prepare(self) -> None:
        """Derive every pattern and forward return the pending bars lead to (patterns first). Idempotent."""
        patterns: dict[PatternKey, Pattern] = {}
        forward: dict[PatternKey, float] = {}
        self._origins = {}
        groups: dict[str, dict[Series, set[int]]] = defaultdict(lambda: defaultdict(set))
        for timeframe, series, start in self._pending:
            groups[timeframe][series].add(start)
        for timeframe, by_series in groups.items():
            history = await self._history(timeframe, by_series)
            for series, starts in by_series.items():
                self._derive(timeframe, series, history.get(series, []), starts, patterns, forward)
        self._derived = [(key, pattern, None) for key, pattern in patterns.items()]
        self._derived += [(key, None, value) for key, value in forward.items()]

    def _items(self) -> list[DerivedWrite]:
        return self._derived

    async def _write(self, items: Sequence[DerivedWrite]) -> None:
        """Upsert the patterns among ``items``, then their forward returns, in chunks (see the module docstring).
        Idempotent."""
        patterns = [pattern for _, pattern, _ in items if pattern is not None]
        forward = [(key, value) for key, _, value in items if value is not None]
        await _in_chunks(self._vectors.upsert, patterns)
        await _in_chunks(self._vectors.set_forward_returns, forward)

    def _origin(self, item: DerivedWrite) -> RawRecord | None:
        return self._origins.get(item[0])

    def _clear(self) -> None:
        self._pending.clear()
        self._derived = []
        self._origins = {}

    async def _history(self, timeframe: str, groups: dict[Series, set[int]]) -> dict[Series, list[tuple[Any, ...]]]:
        """Per series, oldest first: every bar from the earliest pending one to ``WINDOW_BARS`` bar lengths
        past the latest, and the ``WINDOW_BARS + horizon`` bars before the earliest (for the windows that
        end at it and the forward returns that end there), however many bars close at once."""
        tf = self._timeframes[timeframe]
        lo = min(min(starts) for starts in groups.values())
        hi = max(max(starts) for starts in groups.values()) + WINDOW_BARS * tf.ms
        condition, filter_parameters = series_filter(groups)
        _, rows = await self._session.query(
            HISTORY_SQL.replace("{db}", self._session.database).replace("{series_filter}", condition),
            {"tf": timeframe, "lo": lo, "hi": hi, "before": WINDOW_BARS + self._horizon, **filter_parameters},
        )
        history: dict[Series, list[tuple[Any, ...]]] = defaultdict(list)
        for row in rows:
            history[row[0], row[1], row[2]].append(row[3:])
        return history

    def _derive(self, timeframe: str, series: Series, bars: list[tuple[Any, ...]], starts: set[int],
                patterns: dict[PatternKey, Pattern], forward: dict[PatternKey, float]) -> None:
        """Patterns of every window containing a pending bar, and forward returns ending at them."""
        index = {int(bar[0]): i for i, bar in enumerate(bars)}
        affected = sorted({j for start in starts if start in index
                           for j in range(index[start], min(index[start] + WINDOW_BARS + 1, len(bars)))})
        closes = [bar[4] for bar in bars]
        pending_at = sorted(index[start] for start in starts if start in index)
        ends = [i for i in affected if i >= WINDOW_BARS]
        highs, lows, spreads = (np.array([bar[c] for bar in bars], dtype=np.float64) for c in (2, 3, 5))
        embeddings = dict(zip(ends, embed_windows(np.array(closes, dtype=np.float64), highs, lows, spreads, ends)))
        for i in affected:
            newest_pending = pending_at[bisect.bisect_right(pending_at, i) - 1]
            origin = self._pending.get((timeframe, series, int(bars[newest_pending][0])))
            if i >= WINDOW_BARS:
                embedded = embeddings[i]
                if embedded is not None:
                    key = PatternKey(*series, timeframe, int(bars[i][1]))
                    patterns[key] = Pattern(key, embedded[0], close=closes[i], volatility=embedded[1])
                    self._origins[key] = origin
            j = i - self._horizon
            if j >= WINDOW_BARS and closes[j] > 0 and closes[i] > 0:
                key = PatternKey(*series, timeframe, int(bars[j][1]))
                forward[key] = math.log(closes[i] / closes[j])
                self._origins.setdefault(key, origin)


async def _in_chunks(write: Callable[[Sequence[T]], Awaitable[None]], items: Sequence[T]) -> None:
    """``write`` every chunk of :data:`WRITE_CHUNK` items, :data:`WRITE_CONCURRENCY` at a time; raises the first
    error once the chunks under way have ended (nothing is left running)."""
    chunks = [items[i:i + WRITE_CHUNK] for i in range(0, len(items), WRITE_CHUNK)]
    for i in range(0, len(chunks), WRITE_CONCURRENCY):
        outcomes = await asyncio.gather(*(write(chunk) for chunk in chunks[i:i + WRITE_CONCURRENCY]),
                                        return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
