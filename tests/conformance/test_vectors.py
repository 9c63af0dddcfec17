"""The vector role: the conformance suite on every reachable backend, and pgvector's own checks.

pgvector (the local stack's PostgreSQL) always runs; Weaviate runs when
``TICKWIRE_TEST_WEAVIATE_URL`` (and, if its gRPC endpoint is not the same host
on port 50051, ``TICKWIRE_TEST_WEAVIATE_GRPC_URL``; an API key in
``TICKWIRE_TEST_WEAVIATE_API_KEY``) points at a live server, and is skipped
with that reason otherwise. Each backend gets a table or collection private to
this run, dropped at the end.
"""

from __future__ import annotations

import math
import os
import random
import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest
import pytest_asyncio

from pipeline.config import Settings
from pipeline.stores.vectors import (
    TICKWIRE_PATTERN_NAMESPACE,
    Pattern,
    PatternKey,
    PgVectorStore,
    VectorStore,
)
from tests.conformance.conformance_vectors import DIM, VectorStoreConformance, pattern, random_vector

TABLE = "test_patterns_" + uuid.uuid4().hex[:8]


# pgvector ---------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module")
async def pg_store(stack_settings: Settings) -> AsyncIterator[PgVectorStore]:
    vectors = PgVectorStore(stack_settings.postgres_connection_dsn, DIM, table=TABLE)
    await vectors.start()
    yield vectors
    await vectors.close()
    conn = await asyncpg.connect(stack_settings.postgres_connection_dsn)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
    finally:
        await conn.close()


@pytest_asyncio.fixture
async def db(stack_settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection, to look at the table behind the store."""
    conn = await asyncpg.connect(stack_settings.postgres_connection_dsn)
    yield conn
    await conn.close()


@pytest.mark.stack
class TestPgVectorConformance(VectorStoreConformance):
    @pytest.fixture
    def store(self, pg_store: PgVectorStore) -> PgVectorStore:
        return pg_store

    @pytest.fixture
    def make_store(self, stack_settings: Settings) -> Callable[[int], VectorStore]:
        return lambda dimension: PgVectorStore(stack_settings.postgres_connection_dsn, dimension, table=TABLE)


# Weaviate ---------------------------------------------------------------------

WEAVIATE_URL = os.environ.get("TICKWIRE_TEST_WEAVIATE_URL")
WEAVIATE_COLLECTION = "TwTestPattern" + uuid.uuid4().hex[:8]


def weaviate_store(dimension: int) -> VectorStore:
    from pipeline.stores.vectors.weaviate import WeaviateVectorStore

    assert WEAVIATE_URL is not None
    return WeaviateVectorStore(WEAVIATE_URL, dimension, grpc_url=os.environ.get("TICKWIRE_TEST_WEAVIATE_GRPC_URL"),
                               api_key=os.environ.get("TICKWIRE_TEST_WEAVIATE_API_KEY"), collection=WEAVIATE_COLLECTION)


@pytest_asyncio.fixture(scope="module")
async def live_weaviate_store() -> AsyncIterator[VectorStore]:
    if WEAVIATE_URL is None:
        pytest.skip("TICKWIRE_TEST_WEAVIATE_URL is not set: the Weaviate conformance run needs a live Weaviate "
                    "(its requests are checked without one in tests/test_weaviate_wire.py)")
    vectors = weaviate_store(DIM)
    await vectors.start()
    yield vectors
    await vectors._started().collections.delete(WEAVIATE_COLLECTION)  # type: ignore[attr-defined]
    await vectors.close()


class TestWeaviateConformance(VectorStoreConformance):
    @pytest.fixture
    def store(self, live_weaviate_store: VectorStore) -> VectorStore:
        return live_weaviate_store

    @pytest.fixture
    def make_store(self) -> Callable[[int], VectorStore]:
        return weaviate_store


# pgvector's own checks ----------------------------------------------------------

async def test_pattern_id_is_deterministic() -> None:
    key = PatternKey("acme", "demo", "EURUSD", "M1", 1_700_000_000_000)
    assert key.id == uuid.uuid5(TICKWIRE_PATTERN_NAMESPACE, "acme:demo:EURUSD:M1:1700000000000")
    assert key.id == PatternKey("acme", "demo", "EURUSD", "M1", 1_700_000_000_000).id
    assert key.id != PatternKey("acme", "demo", "EURUSD", "M5", 1_700_000_000_000).id
    with pytest.raises(ValueError, match="tenant"):
        PatternKey("ac:me", "demo", "EURUSD", "M1", 0)
    with pytest.raises(ValueError, match="symbol"):
        PatternKey("acme", "demo", "", "M1", 0)


@pytest.mark.stack
async def test_upsert_twice_is_one_row(pg_store: PgVectorStore, tenant: str, db: asyncpg.Connection) -> None:
    rnd = random.Random(3)
    first = pattern(tenant, 42, random_vector(rnd))
    second = pattern(tenant, 42, random_vector(rnd))
    await pg_store.upsert([first])
    await pg_store.upsert([first, second])

    assert await db.fetchval(f"SELECT count(*) FROM {TABLE} WHERE tenant = $1", tenant) == 1
    assert await db.fetchval(f"SELECT id FROM {TABLE} WHERE tenant = $1", tenant) == first.key.id


@pytest.mark.stack
async def test_a_bad_batch_writes_no_row(pg_store: PgVectorStore, tenant: str, db: asyncpg.Connection) -> None:
    rnd = random.Random(8)
    good = pattern(tenant, 1, random_vector(rnd))
    with pytest.raises(ValueError, match="NaN"):
        await pg_store.upsert([good, pattern(tenant, 2, (math.nan, *random_vector(rnd)[1:]))])
    with pytest.raises(ValueError, match="close"):
        await pg_store.upsert([good, Pattern(good.key, good.vector, close=math.nan, volatility=0.1)])
    assert await db.fetchval(f"SELECT count(*) FROM {TABLE} WHERE tenant = $1", tenant) == 0


def test_constructor_checks() -> None:
    dsn = "postgresql://tickwire@127.0.0.1:1/tickwire"  # not connected to
    with pytest.raises(ValueError, match="table must match"):
        PgVectorStore(dsn, DIM, table="patterns; DROP TABLE x")
    with pytest.raises(ValueError, match="dimension must be"):
        PgVectorStore(dsn, 0)
