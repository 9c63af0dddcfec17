"""The graph role on FalkorDB (the local stack's graph server), through ``falkordb.asyncio``.

Layout: **one FalkorDB graph per tenant**, named ``tickwire:{tenant}`` (the
tenant validated against the schema's tenant pattern, which has no ``:``), so
no query can reach another tenant's data. In each graph:

* ``(:Symbol {name})`` and ``(:Strategy {name})`` nodes, each with a range
  index on ``name`` (created on the graph's first write by this process);
* ``(:Symbol {name: a})-[:CORRELATED {timeframe, weight, window_end_ms, samples}]->(:Symbol {name: b})``
  with ``a < b``: the direction only makes the identity deterministic; reads
  match the edge undirected;
* ``(:Strategy)-[:SIGNALS {signals, last_action, mean_confidence, last_time_ms}]->(:Symbol)``.

Writes are ``UNWIND $rows AS r MERGE ...`` batches: nodes and edges are
``MERGE``d on their keys, then the values are ``SET`` only when the row wins
the newer-wins rule of :class:`~pipeline.stores.graph.base.GraphStore`. FalkorDB runs
the write queries of one graph one at a time and applies each as a whole (up
to :data:`ROWS_PER_QUERY` rows), so concurrent writers cannot create duplicate
nodes or edges, and the compare and the write of an edge are one step.

The indexes are ensured once per graph per process (per ``start``): if the
server restarts empty (the local stack keeps no data on disk), graphs that
writes re-create have no index until the store is started again; queries stay
correct, only slower.

Every value goes in as a query parameter. FalkorDB has no binary parameters:
the client renders them into a ``CYPHER name=value ...`` header in front of
the query text, quoting strings (escaping ``\\`` and ``"``); names with quotes,
backticks, braces or newlines round-trip unchanged (tests/test_graph.py).

FalkorDB quirks met here (server 4.16.3, client 1.8.1):

* A variable-length pattern (``-[:CORRELATED*1..D]-``) enumerates every trail:
  on 50 fully correlated symbols depth 2 took 8 ms, depth 3 0.45 s, depth 4
  16 s (each hop multiplies the trails by ~47; depth 5 would take minutes).
  :meth:`FalkorGraphStore._neighbors` therefore runs a breadth-first search,
  one single-hop query per level (at most 5), which also gives "fewest hops"
  directly, and keeps the depth out of the query text (Cypher cannot take a
  path length as a parameter).
* Rows of one ``UNWIND`` batch that ``MERGE`` the same edge do not see each
  other's conditional ``SET`` in order (the later row's update was lost), so
  the base class sends at most one row per identity.
* Any query, even a read-only ``RETURN 1``, on a graph that does not exist
  fails with "Invalid graph operation on empty key": reads of a tenant with no
  graph yet return ``[]``. ``CREATE INDEX`` has no ``IF NOT EXISTS`` and
  fails with "... is already indexed" when the index exists.
* ``count(*)`` over an edge pattern counts connected node *pairs*: parallel
  edges (one pair on two timeframes) count once, while ``count(e)`` and rows
  that return ``e``'s properties see every edge. Nothing here counts edges.
* Doubles come back rendered with 15 significant digits (they are stored
  exactly): a weight can read back differing from the written one in the 16th
  digit.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from falkordb.asyncio import FalkorDB
from falkordb.asyncio.graph import AsyncGraph
from redis.exceptions import ResponseError

from pipeline.config import Settings
from pipeline.stores.graph.base import CorrelationEdge, GraphStore, StrategyEdge, check_tenant

GRAPH_PREFIX = "tickwire:"

#: Rows per write query (its parameters are rendered into the query text).
ROWS_PER_QUERY = 2_000

_INDEXES = (
    "CREATE INDEX FOR (s:Symbol) ON (s.name)",
    "CREATE INDEX FOR (s:Strategy) ON (s.name)",
)

UPSERT_CORRELATIONS = """
UNWIND $rows AS r
MERGE (a:Symbol {name: r.a})
MERGE (b:Symbol {name: r.b})
MERGE (a)-[e:CORRELATED {timeframe: r.timeframe}]->(b)
WITH e, r
WHERE e.window_end_ms IS NULL OR r.window_end_ms >= e.window_end_ms
SET e.weight = r.weight, e.window_end_ms = r.window_end_ms, e.samples = r.samples
"""

UPSERT_STRATEGY_EDGES = """
UNWIND $rows AS r
MERGE (st:Strategy {name: r.strategy})
MERGE (sy:Symbol {name: r.symbol})
MERGE (st)-[e:SIGNALS]->(sy)
WITH e, r
WHERE e.last_time_ms IS NULL
   OR r.last_time_ms > e.last_time_ms
   OR (r.last_time_ms = e.last_time_ms AND r.signals >= e.signals)
SET e.signals = r.signals, e.last_action = r.last_action,
    e.mean_confidence = r.mean_confidence, e.last_time_ms = r.last_time_ms
"""

# One breadth-first level: the qualifying edges from the frontier to symbols
# not seen yet (the undirected pattern matches each stored a->b edge from
# either end). Written as `v.name IN $frontier` rather than UNWIND + MATCH
# because with UNWIND FalkorDB's planner scanned every (n:Symbol) instead of
# using the name index on v.
NEXT_LEVEL = """
MATCH (v:Symbol) WHERE v.name IN $frontier
MATCH (v)-[e:CORRELATED]-(n:Symbol)
WHERE abs(e.weight) >= $min_weight
  AND ($timeframe IS NULL OR e.timeframe = $timeframe)
  AND NOT n.name IN $seen
RETURN n.name, v.name, e.weight, e.timeframe
"""

STRATEGIES = """
MATCH (st:Strategy)-[e:SIGNALS]->(:Symbol {name: $symbol})
RETURN st.name, e.signals, e.last_action, e.mean_confidence, e.last_time_ms
"""

CORRELATIONS = """
MATCH (:Symbol {name: $symbol})-[e:CORRELATED]-(:Symbol)
WHERE $timeframe IS NULL OR e.timeframe = $timeframe
RETURN startNode(e).name, endNode(e).name, e.timeframe, e.weight, e.window_end_ms, e.samples
"""


def graph_name(tenant: str) -> str:
    """The FalkorDB graph (a Redis key) holding ``tenant``'s nodes and edges."""
    return GRAPH_PREFIX + check_tenant(tenant)


def _is_missing_graph(exc: ResponseError) -> bool:
    return "empty key" in str(exc)


def _is_existing_index(exc: ResponseError) -> bool:
    return "already indexed" in str(exc)


class FalkorGraphStore(GraphStore):
    """:class:`GraphStore` on a FalkorDB server at ``url`` (``redis://host:port``)."""

    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        self._url = url
        self._timeout_s = timeout_s
        self._db: FalkorDB | None = None
        self._indexed: set[str] = set()  # graphs whose indexes this process ensured

    @classmethod
    def from_settings(cls, settings: Settings) -> FalkorGraphStore:
        return cls(settings.graph_connection_url)

    # lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        if self._db is None:
            self._db = FalkorDB.from_url(
                self._url, socket_timeout=self._timeout_s, socket_connect_timeout=self._timeout_s
            )
        await self.ping()

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            self._indexed.clear()
            await db.aclose()

    async def ping(self) -> float:
        began = time.perf_counter()
        # A graph-module command (not a plain PING): the module must answer.
        await self._client().config_get("THREAD_COUNT")
        return time.perf_counter() - began

    def _client(self) -> FalkorDB:
        if self._db is None:
            raise RuntimeError("FalkorGraphStore is not started")
        return self._db

    def _graph(self, tenant: str) -> AsyncGraph:
        return self._client().select_graph(graph_name(tenant))

    async def _writable_graph(self, tenant: str) -> AsyncGraph:
        """The tenant's graph, with its indexes ensured (this creates the graph)."""
        graph = self._graph(tenant)
        if graph.name not in self._indexed:
            for statement in _INDEXES:
                try:
                    await graph.query(statement)
                except ResponseError as exc:
                    if not _is_existing_index(exc):
                        raise
            self._indexed.add(graph.name)
        return graph

    async def _read(self, tenant: str, query: str, params: dict[str, Any]) -> list[list[Any]]:
        """Rows of a read-only query on the tenant's graph; ``[]`` if the graph does not exist yet."""
        try:
            result = await self._graph(tenant).ro_query(query, params)
        except ResponseError as exc:
            if _is_missing_graph(exc):
                return []
            raise
        rows: list[list[Any]] = result.result_set
        return rows

    async def _write(self, query: str, rows_by_tenant: dict[str, list[dict[str, Any]]]) -> None:
        for tenant, rows in rows_by_tenant.items():
            graph = await self._writable_graph(tenant)
            for start in range(0, len(rows), ROWS_PER_QUERY):
                await graph.query(query, {"rows": rows[start : start + ROWS_PER_QUERY]})

    # backend hooks --------------------------------------------------------

    async def _upsert_correlations(self, edges: list[CorrelationEdge]) -> None:
        rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in edges:
            rows[e.tenant].append(
                {
                    "a": e.a,
                    "b": e.b,
                    "timeframe": e.timeframe,
                    "weight": float(e.weight),
                    "window_end_ms": int(e.window_end_ms),
                    "samples": int(e.samples),
                }
            )
        await self._write(UPSERT_CORRELATIONS, rows)

    async def _upsert_strategy_edges(self, edges: list[StrategyEdge]) -> None:
        rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in edges:
            rows[e.tenant].append(
                {
                    "strategy": e.strategy,
                    "symbol": e.symbol,
                    "signals": int(e.signals),
                    "last_action": e.last_action,
                    "mean_confidence": float(e.mean_confidence),
                    "last_time_ms": int(e.last_time_ms),
                }
            )
        await self._write(UPSERT_STRATEGY_EDGES, rows)

    async def _next_level(
        self, tenant: str, frontier: list[str], seen: list[str], min_weight: float, timeframe: str | None
    ) -> list[tuple[str, str, float, str]]:
        rows = await self._read(tenant, NEXT_LEVEL,
                                {"frontier": frontier, "seen": seen, "min_weight": min_weight, "timeframe": timeframe})
        return [(name, via, weight, edge_timeframe) for name, via, weight, edge_timeframe in rows]

    async def _strategies(self, tenant: str, symbol: str) -> list[StrategyEdge]:
        rows = await self._read(tenant, STRATEGIES, {"symbol": symbol})
        return [
            StrategyEdge(tenant, strategy, symbol, signals, last_action, float(confidence), last_time_ms)
            for strategy, signals, last_action, confidence, last_time_ms in rows
        ]

    async def _correlations(self, tenant: str, symbol: str, timeframe: str | None) -> list[CorrelationEdge]:
        rows = await self._read(tenant, CORRELATIONS, {"symbol": symbol, "timeframe": timeframe})
        return [
            CorrelationEdge(tenant, a, b, edge_timeframe, float(weight), window_end_ms, samples)
            for a, b, edge_timeframe, weight, window_end_ms, samples in rows
        ]
