"""Symbol–symbol correlation edges, derived from stored closed bars.

When bars of (tenant, broker, timeframe) close, the builder loads the closes
of the last ``window_bars + 1`` bar windows of every symbol of that tenant and
broker from ClickHouse ``candles FINAL``, computes the Pearson correlation of
each pair's log returns over the windows both have (at least ``min_samples``),
and upserts every such pair as an edge (weight = correlation, window end,
samples) into the graph role. All pairs are written, strong or weak, so an
edge always holds the latest correlation; ``threshold`` is what readers use as
the default minimum |weight|. Pure function of stored bars: idempotent.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

import numpy as np

from pipeline.analytics import AnalyticsStore
from pipeline.graph.base import CorrelationEdge, GraphStore
from pipeline.schemas import Candle
from pipeline.sinks.base import Sink
from pipeline.timeframes import Timeframe

CLOSES_SQL = """
SELECT symbol, toUnixTimestamp64Milli(start) AS start_ms, close
FROM {db}.candles FINAL
WHERE tenant = {tenant:String} AND broker = {broker:String} AND timeframe = {tf:String}
  AND start >= fromUnixTimestamp64Milli({lo:Int64}) AND start < fromUnixTimestamp64Milli({hi:Int64})
"""


class CorrelationBuilder(Sink):
    def __init__(self, store: AnalyticsStore, graph: GraphStore, timeframes: Sequence[Timeframe],
                 window_bars: int, min_samples: int) -> None:
        self._store = store
        self._graph = graph
        self._timeframes = {tf.name: tf for tf in timeframes}
        self._window = window_bars
        self._min_samples = min_samples
        self._pending: dict[tuple[str, str, str], int] = {}  # (tenant, broker, timeframe) -> latest bar end

    @property
    def name(self) -> str:
        return "correlations"

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add_bars(self, bars: Sequence[Candle]) -> None:
        for bar in bars:
            slot = (bar.tenant, bar.broker, bar.timeframe)
            self._pending[slot] = max(self._pending.get(slot, 0), bar.end_ms)

    async def flush(self) -> None:
        if not self._pending:
            return
        edges: list[CorrelationEdge] = []
        for (tenant, broker, timeframe), end_ms in self._pending.items():
            edges += await self.compute(tenant, broker, self._timeframes[timeframe], end_ms)
        if edges:
            await self._graph.upsert_correlations(edges)
        self._pending.clear()

    async def compute(self, tenant: str, broker: str, timeframe: Timeframe, end_ms: int) -> list[CorrelationEdge]:
        """Edges of every symbol pair of (tenant, broker) over the window ending at ``end_ms``."""
        _, rows = await self._store.query(CLOSES_SQL.replace("{db}", self._store.database), {
            "tenant": tenant, "broker": broker, "tf": timeframe.name,
            "lo": end_ms - (self._window + 1) * timeframe.ms, "hi": end_ms,
        })
        closes: dict[str, dict[int, float]] = defaultdict(dict)
        for symbol, start_ms, close in rows:
            closes[symbol][int(start_ms)] = close
        returns = {symbol: _log_returns(series, timeframe.ms) for symbol, series in closes.items()}
        symbols = sorted(returns)
        edges = []
        for i, a in enumerate(symbols):
            for b in symbols[i + 1:]:
                common = sorted(returns[a].keys() & returns[b].keys())
                if len(common) < self._min_samples:
                    continue
                weight = _pearson([returns[a][t] for t in common], [returns[b][t] for t in common])
                if weight is not None:
                    edges.append(CorrelationEdge.between(tenant, a, b, timeframe.name, weight, end_ms, len(common)))
        return edges


def _log_returns(closes: dict[int, float], step_ms: int) -> dict[int, float]:
    """Log return of each bar over the bar just before it (bars after a gap have none)."""
    return {
        start: math.log(close / closes[start - step_ms])
        for start, close in closes.items()
        if start - step_ms in closes and close > 0 and closes[start - step_ms] > 0
    }


def _pearson(x: list[float], y: list[float]) -> float | None:
    """Correlation of x and y, clipped to [-1, 1]; None when either does not move."""
    a, b = np.asarray(x), np.asarray(y)
    a, b = a - a.mean(), b - b.mean()
    denominator = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    if denominator == 0.0:
        return None
    return max(-1.0, min(1.0, float((a * b).sum()) / denominator))
