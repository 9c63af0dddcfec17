"""Symbol–symbol correlation edges, derived from stored closed bars.

The graph stage feeds it the bars of ``candles.v1``. When bars of (tenant, broker,
timeframe) close, the builder loads the closes
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

from pipeline.contracts.schemas import Candle
from pipeline.contracts.timeframes import Timeframe
from pipeline.core.codec import RawRecord
from pipeline.sinks.base import ItemSink
from pipeline.stores.analytics import AnalyticsSession
from pipeline.stores.graph.base import CorrelationEdge, GraphStore

CLOSES_SQL = """
SELECT symbol, toUnixTimestamp64Milli(start) AS start_ms, close
FROM {db}.candles FINAL
WHERE tenant = {tenant:String} AND broker = {broker:String} AND timeframe = {tf:String}
  AND start >= fromUnixTimestamp64Milli({lo:Int64}) AND start < fromUnixTimestamp64Milli({hi:Int64})
"""


#: A pending slot: (tenant, broker, timeframe).
Slot = tuple[str, str, str]


class CorrelationBuilder(ItemSink[Slot]):
    """Pending slots remember the latest bar end seen and the ``candles.v1`` record of that bar."""

    def __init__(self, session: AnalyticsSession, graph: GraphStore, timeframes: Sequence[Timeframe],
                 window_bars: int, min_samples: int) -> None:
        self._session = session
        self._graph = graph
        self._timeframes = {tf.name: tf for tf in timeframes}
        self._window = window_bars
        self._min_samples = min_samples
        self._pending: dict[Slot, tuple[int, RawRecord | None]] = {}  # slot -> (latest bar end, its record)

    @property
    def name(self) -> str:
        return "correlations"

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add_bars(self, bars: Sequence[tuple[RawRecord | None, Candle]]) -> None:
        """Queue closed bars (with the record each came from); bars of unknown timeframes are ignored."""
        for record, bar in bars:
            if bar.timeframe not in self._timeframes:
                continue
            slot = (bar.tenant, bar.broker, bar.timeframe)
            current = self._pending.get(slot)
            if current is None or bar.end_ms >= current[0]:
                self._pending[slot] = (int(bar.end_ms), record)

    def _items(self) -> list[Slot]:
        return sorted(self._pending)

    async def _write(self, slots: Sequence[Slot]) -> None:
        edges: list[CorrelationEdge] = []
        for tenant, broker, timeframe in slots:
            edges += await self.compute(tenant, broker, self._timeframes[timeframe], self._pending[tenant, broker, timeframe][0])
        if edges:
            await self._graph.upsert_correlations(edges)

    def _origin(self, item: Slot) -> RawRecord | None:
        return self._pending[item][1]

    def _clear(self) -> None:
        self._pending.clear()

    async def compute(self, tenant: str, broker: str, timeframe: Timeframe, end_ms: int) -> list[CorrelationEdge]:
        """Edges of every symbol pair of (tenant, broker) over the window ending at ``end_ms``."""
        _, rows = await self._session.query(CLOSES_SQL.replace("{db}", self._session.database), {
            "tenant": tenant, "broker": broker, "tf": timeframe.name,
            "lo": end_ms - (self._window + 1) * timeframe.ms, "hi": end_ms,
        })
        closes: dict[str, dict[int, float]] = defaultdict(dict)
        for symbol, start_ms, close in rows:
            closes[symbol][int(start_ms)] = close
        returns = {symbol: _log_returns(series, timeframe.ms) for symbol, series in closes.items()}
        return [CorrelationEdge.between(tenant, a, b, timeframe.name, weight, end_ms, samples)
                for a, b, weight, samples in pairwise_correlations(returns, self._min_samples)]


def pairwise_correlations(returns: dict[str, dict[int, float]], min_samples: int) -> list[tuple[str, str, float, int]]:
    """(a, b, Pearson correlation, samples) of every symbol pair a < b over the bar windows both have
    (at least ``min_samples``), clipped to [-1, 1]; pairs where either does not move are left out.

    All pairs at once with matrix products over a symbols × windows matrix (zero where a
    symbol has no return, plus a 0/1 mask): per pair, the sums over the common windows.
    """
    symbols = sorted(returns)
    windows = sorted({t for series in returns.values() for t in series})
    if len(symbols) < 2 or not windows:
        return []
    column = {t: j for j, t in enumerate(windows)}
    values = np.zeros((len(symbols), len(windows)))
    mask = np.zeros_like(values)
    for row, symbol in enumerate(symbols):
        for t, r in returns[symbol].items():
            values[row, column[t]] = r
            mask[row, column[t]] = 1.0
    n = mask @ mask.T                     # common windows of (a, b)
    sum_x = values @ mask.T               # [a, b]: sum of a's returns over the windows common with b
    sum_xx = (values * values) @ mask.T
    sum_xy = values @ values.T
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_x = sum_x / n
        var_x = sum_xx - sum_x * mean_x   # [a, b]: a's variance (times n) over the common windows
        cov = sum_xy - sum_x * mean_x.T
        # a series that does not move has variance 0 up to rounding
        flat = var_x <= 1e-12 * sum_xx
        weight = cov / np.sqrt(var_x * var_x.T)
    pairs = []
    for i, j in zip(*np.triu_indices(len(symbols), k=1)):
        samples = int(n[i, j])
        if samples < min_samples or flat[i, j] or flat[j, i]:
            continue
        pairs.append((symbols[i], symbols[j], max(-1.0, min(1.0, float(weight[i, j]))), samples))
    return pairs


def _log_returns(closes: dict[int, float], step_ms: int) -> dict[int, float]:
    """Log return of each bar over the bar just before it (bars after a gap have none)."""
    return {
        start: math.log(close / closes[start - step_ms])
        for start, close in closes.items()
        if start - step_ms in closes and close > 0 and closes[start - step_ms] > 0
    }
