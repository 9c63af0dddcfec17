"""The graph role on ArangoDB (the production backend), through python-arango.

Layout: one database (``TICKWIRE_ARANGO_DATABASE``, created at start if it is
missing and the user may create it) holding every tenant, with

* vertex collections ``symbols`` and ``strategies``: ``{_key, tenant, name}``;
* edge collection ``correlated``: ``symbols/a -> symbols/b`` with ``a < b``
  (the direction only makes the identity deterministic; reads traverse it
  ``ANY``), ``{tenant, a, b, timeframe, weight, window_end_ms, samples}``;
* edge collection ``signals``: ``strategies/s -> symbols/y``,
  ``{tenant, strategy, symbol, signals, last_action, mean_confidence, last_time_ms}``.

**Tenant isolation: a tenant attribute, not a database per tenant.** A
database per tenant would need the worker to hold administrator rights on
``_system`` (to create databases on demand) and costs a set of collections
and indexes per tenant; one database serves any number of tenants with
rights on that database only. Isolation does not rest on filters alone:

1. every ``_key`` starts with the tenant and hashes the full identity
   (tenant included), so a vertex id the queries start from is derived from
   (tenant, name) and can only be that tenant's vertex;
2. every edge joins two vertices of its own tenant (its ``_from``/``_to`` are
   built from the edge's tenant), so a traversal can never leave the
   tenant's subgraph;
3. every query also filters ``tenant == @tenant`` on the edges and vertices
   it returns (defence in depth, checked by tests/test_arangodb_wire.py).

**Keys.** ArangoDB keys allow only letters, digits and ``_-:.@()+,=;$!*'%``
and at most 254 bytes, while names may hold any character. A key is
``{tenant}:{h}``: the tenant (the schema's tenant pattern is a subset of the
key alphabet) and ``h``, the first 32 hex digits (128 bits) of SHA-256 of the
identity encoded as a JSON array (unambiguous for any names). Keys are
deterministic, always valid, at most 96 bytes, and readable enough to see
whose a document is.

**Writes** are AQL queries over a batch (:data:`ROWS_PER_QUERY` rows):
vertices ``INSERT ... OPTIONS { overwriteMode: "ignore" }`` (created once,
never rewritten), then edges ``UPSERT { _key } INSERT ... UPDATE`` with the
newer-wins rule of :class:`~pipeline.stores.graph.base.GraphStore` evaluated against
``OLD`` in the same statement. A write-write conflict with a concurrent
writer of the same edge (error 1200) or a lost race to insert it (1210)
makes the statement fail as a whole; it is retried here up to
:data:`CONFLICT_ATTEMPTS` times, then raised (the checkpoint retries again).

**Reads** are AQL traversals from the vertex derived from (tenant, symbol),
all values as bind parameters (the query texts are constants):
:meth:`ArangoGraphStore.neighbors` runs a breadth-first search, one 1-hop
traversal per level (at most 5), because a variable-depth traversal either
enumerates every path (``uniqueVertices: "path"``) or, with global
uniqueness, keeps the first edge found to a vertex rather than the strongest
one the contract asks for.

python-arango is synchronous: every call runs on a small thread pool of this
store, never on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar, cast

from arango.client import ArangoClient
from arango.database import StandardDatabase
from arango.exceptions import ArangoServerError
from arango.result import Result

from pipeline.config import Settings
from pipeline.stores.graph.base import CorrelationEdge, GraphStore, StrategyEdge

T = TypeVar("T")

SYMBOLS = "symbols"
STRATEGIES = "strategies"
CORRELATED = "correlated"
SIGNALS = "signals"
#: name -> is an edge collection
COLLECTIONS = {SYMBOLS: False, STRATEGIES: False, CORRELATED: True, SIGNALS: True}

#: Rows per write query.
ROWS_PER_QUERY = 2_000
#: Attempts of a write that meets a concurrent writer of the same edge.
CONFLICT_ATTEMPTS = 5
#: ArangoDB error numbers: write-write conflict, unique constraint violated, database not found, duplicate name.
CONFLICT, UNIQUE_VIOLATED, DATABASE_NOT_FOUND, DUPLICATE_NAME = 1200, 1210, 1228, 1207
#: Threads that run python-arango calls (its HTTP session is shared between them).
THREADS = 4

INSERT_VERTICES = """
FOR v IN @vertices
  INSERT v INTO @@collection OPTIONS { overwriteMode: "ignore" }
"""

UPSERT_CORRELATIONS = """
FOR r IN @edges
  UPSERT { _key: r._key }
  INSERT r
  UPDATE r.window_end_ms >= OLD.window_end_ms
    ? { weight: r.weight, window_end_ms: r.window_end_ms, samples: r.samples }
    : {}
  IN correlated
"""

UPSERT_STRATEGY_EDGES = """
FOR r IN @edges
  UPSERT { _key: r._key }
  INSERT r
  UPDATE r.last_time_ms > OLD.last_time_ms OR (r.last_time_ms == OLD.last_time_ms AND r.signals >= OLD.signals)
    ? { signals: r.signals, last_action: r.last_action, mean_confidence: r.mean_confidence, last_time_ms: r.last_time_ms }
    : {}
  IN signals
"""

# One breadth-first level: the qualifying edges from the frontier to symbols not seen yet.
NEXT_LEVEL = """
FOR start IN @frontier
  FOR n, e IN 1..1 ANY start correlated
    FILTER e.tenant == @tenant AND n.tenant == @tenant
    FILTER ABS(e.weight) >= @min_weight
    FILTER @timeframe == null OR e.timeframe == @timeframe
    FILTER n.name NOT IN @seen
    RETURN [n.name, e.a == n.name ? e.b : e.a, e.weight, e.timeframe]
"""

STRATEGIES_OF = """
FOR st, e IN 1..1 INBOUND @symbol signals
  FILTER e.tenant == @tenant AND st.tenant == @tenant
  RETURN [st.name, e.signals, e.last_action, e.mean_confidence, e.last_time_ms]
"""

CORRELATIONS_OF = """
FOR n, e IN 1..1 ANY @symbol correlated
  FILTER e.tenant == @tenant AND n.tenant == @tenant
  FILTER @timeframe == null OR e.timeframe == @timeframe
  RETURN [e.a, e.b, e.timeframe, e.weight, e.window_end_ms, e.samples]
"""


def document_key(tenant: str, *identity: str) -> str:
    """The ``_key`` of the document with ``identity`` in ``tenant``: ``{tenant}:{128-bit hash}``."""
    encoded = json.dumps([tenant, *identity], ensure_ascii=False, separators=(",", ":")).encode()
    return f"{tenant}:{hashlib.sha256(encoded).hexdigest()[:32]}"


def symbol_id(tenant: str, name: str) -> str:
    return f"{SYMBOLS}/{document_key(tenant, name)}"


def strategy_id(tenant: str, name: str) -> str:
    return f"{STRATEGIES}/{document_key(tenant, name)}"


def _at_once(result: Result[T]) -> T:
    """The value of a call on a :class:`StandardDatabase`, which runs it at once: python-arango's ``Result``
    also covers the jobs (and the None) of async and batch databases, which tickwire never uses."""
    return cast(T, result)


class ArangoGraphStore(GraphStore):
    """:class:`GraphStore` on an ArangoDB server (or cluster coordinator) at ``url`` (``http(s)://host:port``)."""

    def __init__(
        self, url: str, *, database: str = "tickwire", username: str = "root", password: str = "",
        timeout_s: float = 30.0,
    ) -> None:
        self._url = url
        self._database = database
        self._username = username
        self._password = password
        self._timeout_s = timeout_s
        self._client: ArangoClient | None = None
        self._db: StandardDatabase | None = None
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ArangoGraphStore:
        return cls(
            settings.graph_url,
            database=settings.arango_database,
            username=settings.arango_username,
            password=settings.arango_password.get_secret_value(),
        )

    # lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        if self._db is not None:
            return
        pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="arangodb")
        client = ArangoClient(hosts=self._url, request_timeout=self._timeout_s)
        try:
            db = await asyncio.get_running_loop().run_in_executor(pool, self._open, client)
        except BaseException:
            client.close()
            pool.shutdown(wait=False)
            raise
        self._client, self._db, self._pool = client, db, pool

    def _open(self, client: ArangoClient) -> StandardDatabase:
        """The database with its collections, created if missing (concurrent creators are fine)."""
        db = client.db(self._database, username=self._username, password=self._password)
        try:
            db.version()
        except ArangoServerError as exc:
            if exc.error_code != DATABASE_NOT_FOUND:
                raise
            system = client.db("_system", username=self._username, password=self._password)
            try:
                system.create_database(self._database)
            except ArangoServerError as create_exc:
                if create_exc.error_code != DUPLICATE_NAME:
                    raise RuntimeError(
                        f"ArangoDB database {self._database!r} (TICKWIRE_ARANGO_DATABASE) does not exist and "
                        f"user {self._username!r} cannot create it: {create_exc.error_message}"
                    ) from None
        existing = {c["name"]: c["type"] for c in _at_once(db.collections())}
        for name, edge in COLLECTIONS.items():
            wanted = "edge" if edge else "document"
            if name in existing:
                if existing[name] != wanted:
                    raise ValueError(
                        f"ArangoDB collection {self._database}/{name} is a {existing[name]} collection, "
                        f"tickwire needs an {wanted} collection there"
                    )
                continue
            try:
                db.create_collection(name, edge=edge)
            except ArangoServerError as exc:
                if exc.error_code != DUPLICATE_NAME:
                    raise
        return db

    async def close(self) -> None:
        client, pool = self._client, self._pool
        self._client = self._db = self._pool = None
        if client is not None:
            client.close()
        if pool is not None:
            pool.shutdown(wait=True)

    async def ping(self) -> float:
        db = self._started()
        began = time.perf_counter()
        await self._call(db.version)
        return time.perf_counter() - began

    def _started(self) -> StandardDatabase:
        if self._db is None:
            raise RuntimeError("ArangoGraphStore is not started")
        return self._db

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        self._started()
        assert self._pool is not None
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # AQL ------------------------------------------------------------------

    def _query(self, query: str, bind_vars: dict[str, Any]) -> list[Any]:
        """All rows of an AQL query (runs on the pool)."""
        cursor = _at_once(self._started().aql.execute(query, bind_vars=bind_vars, batch_size=1000))
        rows = list(cursor)
        cursor.close(ignore_missing=True)
        return rows

    def _write(self, query: str, bind_vars: dict[str, Any]) -> None:
        """Run a write query, again after a conflict with a concurrent writer (runs on the pool)."""
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                self._started().aql.execute(query, bind_vars=bind_vars)
                return
            except ArangoServerError as exc:
                if exc.error_code not in (CONFLICT, UNIQUE_VIOLATED) or attempt == CONFLICT_ATTEMPTS:
                    raise
                time.sleep(0.01 * 2**attempt)

    def _write_all(self, vertices: dict[str, dict[str, dict[str, str]]], query: str, edges: list[dict[str, Any]]) -> None:
        """Vertices first (so an edge never points at nothing), then the edges, in batches (runs on the pool)."""
        for collection, by_key in vertices.items():
            rows = list(by_key.values())
            for start in range(0, len(rows), ROWS_PER_QUERY):
                self._write(INSERT_VERTICES, {"@collection": collection, "vertices": rows[start : start + ROWS_PER_QUERY]})
        for start in range(0, len(edges), ROWS_PER_QUERY):
            self._write(query, {"edges": edges[start : start + ROWS_PER_QUERY]})

    # backend hooks --------------------------------------------------------

    async def _upsert_correlations(self, edges: list[CorrelationEdge]) -> None:
        symbols: dict[str, dict[str, str]] = {}
        rows = []
        for e in edges:
            for name in (e.a, e.b):
                key = document_key(e.tenant, name)
                symbols[key] = {"_key": key, "tenant": e.tenant, "name": name}
            rows.append({
                "_key": document_key(e.tenant, e.a, e.b, e.timeframe),
                "_from": symbol_id(e.tenant, e.a),
                "_to": symbol_id(e.tenant, e.b),
                "tenant": e.tenant,
                "a": e.a,
                "b": e.b,
                "timeframe": e.timeframe,
                "weight": float(e.weight),
                "window_end_ms": int(e.window_end_ms),
                "samples": int(e.samples),
            })
        await self._call(self._write_all, {SYMBOLS: symbols}, UPSERT_CORRELATIONS, rows)

    async def _upsert_strategy_edges(self, edges: list[StrategyEdge]) -> None:
        vertices: dict[str, dict[str, dict[str, str]]] = defaultdict(dict)
        rows = []
        for e in edges:
            for collection, name in ((STRATEGIES, e.strategy), (SYMBOLS, e.symbol)):
                key = document_key(e.tenant, name)
                vertices[collection][key] = {"_key": key, "tenant": e.tenant, "name": name}
            rows.append({
                "_key": document_key(e.tenant, e.strategy, e.symbol),
                "_from": strategy_id(e.tenant, e.strategy),
                "_to": symbol_id(e.tenant, e.symbol),
                "tenant": e.tenant,
                "strategy": e.strategy,
                "symbol": e.symbol,
                "signals": int(e.signals),
                "last_action": e.last_action,
                "mean_confidence": float(e.mean_confidence),
                "last_time_ms": int(e.last_time_ms),
            })
        await self._call(self._write_all, dict(vertices), UPSERT_STRATEGY_EDGES, rows)

    async def _next_level(
        self, tenant: str, frontier: list[str], seen: list[str], min_weight: float, timeframe: str | None
    ) -> list[tuple[str, str, float, str]]:
        return await self._call(self._query, NEXT_LEVEL, {
            "frontier": [symbol_id(tenant, name) for name in frontier],
            "tenant": tenant,
            "min_weight": min_weight,
            "timeframe": timeframe,
            "seen": seen,
        })

    async def _strategies(self, tenant: str, symbol: str) -> list[StrategyEdge]:
        rows = await self._call(self._query, STRATEGIES_OF, {"symbol": symbol_id(tenant, symbol), "tenant": tenant})
        return [
            StrategyEdge(tenant, strategy, symbol, int(signals), last_action, float(confidence), int(last_time_ms))
            for strategy, signals, last_action, confidence, last_time_ms in rows
        ]

    async def _correlations(self, tenant: str, symbol: str, timeframe: str | None) -> list[CorrelationEdge]:
        rows = await self._call(
            self._query, CORRELATIONS_OF, {"symbol": symbol_id(tenant, symbol), "tenant": tenant, "timeframe": timeframe}
        )
        return [
            CorrelationEdge(tenant, a, b, edge_timeframe, float(weight), int(window_end_ms), int(samples))
            for a, b, edge_timeframe, weight, window_end_ms, samples in rows
        ]
