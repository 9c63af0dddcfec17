"""The vector role on PostgreSQL + pgvector (the local stack's backend), over an asyncpg pool.

One table (``patterns`` by default) holds every tenant's patterns, keyed by
:attr:`PatternKey.id`; an HNSW index (cosine) serves the nearest-neighbour
order and a btree on (tenant, symbol, timeframe, window_end) the filters.

Contracts beyond :class:`VectorStore`:
- :meth:`PgVectorStore.start` creates the ``vector`` extension, the table and
  both indexes if missing, under an advisory lock (concurrent starts are
  safe), and refuses a table whose vectors have another dimension.
- Pages are half filled (``fillfactor = 50``): every pattern is updated once
  more when its forward return is recorded, and the free room lets that
  update stay on its page (HOT), so it never touches the HNSW index
  (measured: 1,000 forward returns in ~10-40 ms instead of ~250 ms).
- An upsert is one statement over ``unnest`` of arrays (one round trip per
  batch, atomic). A row whose values would not change is not rewritten, so a
  redelivered batch costs no index maintenance.
- A search runs in one transaction and is planned for its actual parameters
  (``plan_cache_mode = force_custom_plan``, never a cached generic plan), so
  PostgreSQL picks per query: the btree plus an exact sort when the tenant's
  matching rows are few, else the HNSW index with pgvector's iterative scan
  (``hnsw.iterative_scan = relaxed_order``, so rows filtered out by tenant or
  filters do not eat into ``k``), re-ordered by exact distance. If that
  returns fewer than ``k`` rows (the iterative scan gives up after
  ``hnsw.max_scan_tuples``, e.g. when other tenants hold the vectors nearest
  to the query), the same query runs again without index scans, which is exact.
- SQL is parameterized; the only text put into it is the table name
  (validated at construction) and the dimension (an int).
"""

from __future__ import annotations

import functools
import re
import time

import asyncpg
from pgvector import Vector
from pgvector.asyncpg import register_vector

from pipeline.stores.vectors.base import Pattern, PatternKey, PatternMatch, VectorStore

#: Table names: lower-case identifiers short enough that the index names derived from them fit in 63 bytes.
TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")
#: pgvector's HNSW index accepts ``vector`` columns of up to 2,000 dimensions.
MAX_DIMENSION = 2000
#: hnsw.ef_search (candidate list size) is at least pgvector's default and at least k.
DEFAULT_EF_SEARCH = 40

CONNECT_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 60.0
#: Connections of the pool: the patterns stage's upserts and concurrent searches (the API's, the enricher's).
POOL_MAX_SIZE = 8


class PgVectorStore(VectorStore):
    """:class:`VectorStore` in PostgreSQL with pgvector; ``dsn`` as in ``settings.postgres_dsn``."""

    def __init__(self, dsn: str, dimension: int, table: str = "patterns") -> None:
        if isinstance(dimension, bool) or not isinstance(dimension, int) or not 1 <= dimension <= MAX_DIMENSION:
            raise ValueError(f"dimension must be an int in 1..{MAX_DIMENSION}, got {dimension!r}")
        if not TABLE_NAME.fullmatch(table):
            raise ValueError(f"table must match {TABLE_NAME.pattern}, got {table!r}")
        self._dsn = dsn
        self._dimension = dimension
        self._table = table
        self._pool: asyncpg.Pool | None = None
        t = table
        self._ddl = (
            "CREATE EXTENSION IF NOT EXISTS vector",
            f"""CREATE TABLE IF NOT EXISTS {t} (
                id uuid PRIMARY KEY,
                tenant text NOT NULL,
                broker text NOT NULL,
                symbol text NOT NULL,
                timeframe text NOT NULL,
                window_end bigint NOT NULL,
                embedding vector({dimension}) NOT NULL,
                close double precision NOT NULL,
                volatility double precision NOT NULL,
                forward_return double precision,
                updated_at timestamptz NOT NULL DEFAULT now()
            ) WITH (fillfactor = 50)""",
            f"CREATE INDEX IF NOT EXISTS {t}_embedding_hnsw ON {t} USING hnsw (embedding vector_cosine_ops)",
            f"CREATE INDEX IF NOT EXISTS {t}_series ON {t} (tenant, symbol, timeframe, window_end)",
        )
        self._upsert_sql = f"""
            INSERT INTO {t} AS p (id, tenant, broker, symbol, timeframe, window_end,
                                  embedding, close, volatility, forward_return)
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],
                                 $7::vector[], $8::float8[], $9::float8[], $10::float8[])
            ON CONFLICT (id) DO UPDATE SET
                embedding = EXCLUDED.embedding,
                close = EXCLUDED.close,
                volatility = EXCLUDED.volatility,
                forward_return = COALESCE(EXCLUDED.forward_return, p.forward_return),
                updated_at = now()
            WHERE (p.embedding, p.close, p.volatility, p.forward_return) IS DISTINCT FROM
                  (EXCLUDED.embedding, EXCLUDED.close, EXCLUDED.volatility,
                   COALESCE(EXCLUDED.forward_return, p.forward_return))"""
        self._forward_returns_sql = f"""
            UPDATE {t} AS p SET forward_return = u.forward_return, updated_at = now()
            FROM unnest($1::uuid[], $2::float8[]) AS u(id, forward_return)
            WHERE p.id = u.id AND p.forward_return IS DISTINCT FROM u.forward_return"""
        # "distance + 0": the CTE's rows come sorted by distance only roughly (relaxed_order),
        # but the planner would trust its ORDER BY and skip the outer sort without the "+ 0".
        self._search_sql = f"""
            WITH nearest AS MATERIALIZED (
                SELECT broker, symbol, timeframe, window_end, close, volatility, forward_return,
                       embedding <=> $2 AS distance
                FROM {t}
                WHERE tenant = $1
                  AND ($3::text IS NULL OR symbol = $3)
                  AND ($4::text IS NULL OR timeframe = $4)
                  AND ($5::text IS NULL OR broker = $5)
                  AND ($6::bigint IS NULL OR window_end < $6)
                  AND (NOT $7::boolean OR forward_return IS NOT NULL)
                ORDER BY embedding <=> $2
                LIMIT $8
            )
            SELECT * FROM nearest ORDER BY distance + 0, window_end DESC"""

    @property
    def dimension(self) -> int:
        return self._dimension

    async def start(self) -> None:
        if self._pool is not None:
            return
        conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT_S, command_timeout=COMMAND_TIMEOUT_S)
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"tickwire.vectors.{self._table}")
                await conn.execute(self._ddl[0])
                existing = await conn.fetchval(
                    "SELECT atttypmod FROM pg_attribute"
                    " WHERE attrelid = to_regclass($1) AND attname = 'embedding' AND NOT attisdropped",
                    self._table,
                )
                if existing is not None and existing != self._dimension:
                    raise ValueError(
                        f"table {self._table!r} holds vectors of dimension {existing}, not {self._dimension}: "
                        "use another table for another embedding"
                    )
                for statement in self._ddl[1:]:
                    await conn.execute(statement)
            vector_schema = await conn.fetchval(
                "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'vector'"
            )
        finally:
            await conn.close()
        self._pool = await asyncpg.create_pool(
            self._dsn,
            min_size=1,
            max_size=POOL_MAX_SIZE,
            init=functools.partial(register_vector, schema=vector_schema),
            timeout=CONNECT_TIMEOUT_S,
            command_timeout=COMMAND_TIMEOUT_S,
        )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _started(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("PgVectorStore is not started: await start() first")
        return self._pool

    async def _upsert(self, patterns: list[Pattern]) -> None:
        keys = [pattern.key for pattern in patterns]
        await self._started().execute(
            self._upsert_sql,
            [key.id for key in keys],
            [key.tenant for key in keys],
            [key.broker for key in keys],
            [key.symbol for key in keys],
            [key.timeframe for key in keys],
            [key.window_end_ms for key in keys],
            [Vector(list(pattern.vector)) for pattern in patterns],
            [pattern.close for pattern in patterns],
            [pattern.volatility for pattern in patterns],
            [pattern.forward_return for pattern in patterns],
        )

    async def _set_forward_returns(self, latest: dict[PatternKey, float]) -> None:
        await self._started().execute(self._forward_returns_sql, [key.id for key in latest], list(latest.values()))

    async def _search(
        self,
        tenant: str,
        query: list[float],
        k: int,
        *,
        symbol: str | None,
        timeframe: str | None,
        broker: str | None,
        before_ms: int | None,
        with_forward_return_only: bool,
    ) -> list[PatternMatch]:
        args = (tenant, query, symbol, timeframe, broker, before_ms, with_forward_return_only, k)
        async with self._started().acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),"
                " set_config('hnsw.ef_search', $1, true),"
                " set_config('plan_cache_mode', 'force_custom_plan', true)",
                str(max(DEFAULT_EF_SEARCH, k)),
            )
            rows = await conn.fetch(self._search_sql, *args)
            if len(rows) < k:
                # The index scan may stop before it meets k of this tenant's rows: answer exactly.
                await conn.execute("SELECT set_config('enable_indexscan', 'off', true)")
                rows = await conn.fetch(self._search_sql, *args)
        return [
            PatternMatch(
                key=PatternKey(tenant, row["broker"], row["symbol"], row["timeframe"], row["window_end"]),
                distance=row["distance"],
                forward_return=row["forward_return"],
                close=row["close"],
                volatility=row["volatility"],
            )
            for row in rows
        ]

    async def ping(self) -> float:
        pool = self._started()
        began = time.perf_counter()
        await pool.fetchval("SELECT 1", timeout=CONNECT_TIMEOUT_S)
        return time.perf_counter() - began
