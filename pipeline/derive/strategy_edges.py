"""Strategy→symbol edges, derived from the stored, deduplicated signals.

For each (tenant, strategy, symbol) that received signals since the last
checkpoint, the builder reads the absolute aggregates (count, last action,
mean confidence, last time) from ClickHouse ``signals FINAL`` and writes them
to the graph role. Absolute values, never increments: redelivery and replay
write the same edge. Flushed after the signals table sink.
"""

from __future__ import annotations

from typing import Sequence

from pipeline.contracts.schemas import Signal
from pipeline.sinks.base import Sink
from pipeline.stores.analytics import AnalyticsStore
from pipeline.stores.graph.base import GraphStore, StrategyEdge

AGGREGATES_SQL = """
SELECT tenant, strategy, symbol, count() AS signals, argMax(action, (time, id)) AS last_action,
       avg(confidence) AS mean_confidence, toUnixTimestamp64Milli(max(time)) AS last_time_ms
FROM {db}.signals FINAL
WHERE (tenant, strategy, symbol) IN {keys:Array(Tuple(String, String, String))}
GROUP BY tenant, strategy, symbol
"""


class StrategyEdgeBuilder(Sink):
    def __init__(self, store: AnalyticsStore, graph: GraphStore) -> None:
        self._store = store
        self._graph = graph
        self._pending: set[tuple[str, str, str]] = set()

    @property
    def name(self) -> str:
        return "strategy_edges"

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add_signals(self, signals: Sequence[Signal]) -> None:
        self._pending.update((s.tenant, s.strategy, s.symbol) for s in signals)

    async def flush(self) -> None:
        if not self._pending:
            return
        _, rows = await self._store.query(AGGREGATES_SQL.replace("{db}", self._store.database),
                                          {"keys": sorted(self._pending)})
        edges = [StrategyEdge(tenant, strategy, symbol, int(count), action, min(1.0, max(0.0, float(confidence))), int(last))
                 for tenant, strategy, symbol, count, action, confidence, last in rows]
        if edges:
            await self._graph.upsert_strategy_edges(edges)
        self._pending.clear()
