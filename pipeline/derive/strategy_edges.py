"""Strategy→symbol edges, derived from the stored, deduplicated signals.

The graph stage feeds it the signals of ``signals.enriched.v1`` (published
only once a signal is stored). For each (tenant, strategy, symbol) that
received signals since the last checkpoint, the builder reads the absolute aggregates (count, last action,
mean confidence, last time) from ClickHouse ``signals FINAL`` and writes them
to the graph role. Absolute values, never increments: redelivery and replay
write the same edge.
"""

from __future__ import annotations

from typing import Sequence

from pipeline.contracts.schemas import Signal
from pipeline.core.codec import RawRecord
from pipeline.sinks.base import ItemSink
from pipeline.stores.analytics import AnalyticsSession
from pipeline.stores.graph.base import GraphStore, StrategyEdge

AGGREGATES_SQL = """
SELECT tenant, strategy, symbol, count() AS signals, argMax(action, (time, id)) AS last_action,
       avg(confidence) AS mean_confidence, toUnixTimestamp64Milli(max(time)) AS last_time_ms
FROM {db}.signals FINAL
WHERE (tenant, strategy, symbol) IN {keys:Array(Tuple(String, String, String))}
GROUP BY tenant, strategy, symbol
"""


#: A pending edge: (tenant, strategy, symbol).
EdgeKey = tuple[str, str, str]


class StrategyEdgeBuilder(ItemSink[EdgeKey]):
    def __init__(self, session: AnalyticsSession, graph: GraphStore) -> None:
        self._session = session
        self._graph = graph
        self._pending: dict[EdgeKey, RawRecord | None] = {}

    @property
    def name(self) -> str:
        return "strategy_edges"

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add_signals(self, signals: Sequence[tuple[RawRecord | None, Signal]]) -> None:
        """Queue the edges of stored signals (with the record each came from)."""
        for record, s in signals:
            self._pending[s.tenant, s.strategy, s.symbol] = record

    def _items(self) -> list[EdgeKey]:
        return sorted(self._pending)

    async def _write(self, keys: Sequence[EdgeKey]) -> None:
        _, rows = await self._session.query(AGGREGATES_SQL.replace("{db}", self._session.database), {"keys": list(keys)})
        edges = [StrategyEdge(tenant, strategy, symbol, int(count), action, min(1.0, max(0.0, float(confidence))), int(last))
                 for tenant, strategy, symbol, count, action, confidence, last in rows]
        if edges:
            await self._graph.upsert_strategy_edges(edges)

    def _origin(self, item: EdgeKey) -> RawRecord | None:
        return self._pending.get(item)

    def _clear(self) -> None:
        self._pending.clear()
