"""The vector role against the real PostgreSQL + pgvector of the local stack.

Every test writes under its own tenant(s) into one table private to this
module, so nothing here sees (or disturbs) another test's vectors.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest
import pytest_asyncio

from pipeline.config import Settings
from pipeline.vectors import (
    TICKWIRE_PATTERN_NAMESPACE,
    Pattern,
    PatternKey,
    PgVectorStore,
)

pytestmark = pytest.mark.stack

DIM = 16
TABLE = "test_patterns_" + uuid.uuid4().hex[:8]


@pytest_asyncio.fixture(scope="module")
async def store(stack_settings: Settings) -> AsyncIterator[PgVectorStore]:
    vectors = PgVectorStore(stack_settings.postgres_dsn, DIM, table=TABLE)
    await vectors.start()
    yield vectors
    await vectors.close()
    conn = await asyncpg.connect(stack_settings.postgres_dsn)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
    finally:
        await conn.close()


@pytest_asyncio.fixture
async def db(stack_settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection, to look at the table behind the store."""
    conn = await asyncpg.connect(stack_settings.postgres_dsn)
    yield conn
    await conn.close()


def other_tenant() -> str:
    return "o" + uuid.uuid4().hex[:10]


def random_vector(rnd: random.Random) -> tuple[float, ...]:
    return tuple(rnd.gauss(0.0, 1.0) for _ in range(DIM))


def near(vector: Sequence[float], rnd: random.Random, scale: float = 0.01) -> tuple[float, ...]:
    return tuple(x + rnd.gauss(0.0, scale) for x in vector)


def cosine_distance(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return 1.0 - dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def pattern(tenant: str, window_end_ms: int, vector: Sequence[float], *, symbol: str = "EURUSD",
            timeframe: str = "M1", broker: str = "demo", forward_return: float | None = None) -> Pattern:
    key = PatternKey(tenant, broker, symbol, timeframe, window_end_ms)
    return Pattern(key, tuple(vector), close=1.1 + window_end_ms * 1e-6, volatility=0.002, forward_return=forward_return)


async def test_pattern_id_is_deterministic() -> None:
    key = PatternKey("acme", "demo", "EURUSD", "M1", 1_700_000_000_000)
    assert key.id == uuid.uuid5(TICKWIRE_PATTERN_NAMESPACE, "acme:demo:EURUSD:M1:1700000000000")
    assert key.id == PatternKey("acme", "demo", "EURUSD", "M1", 1_700_000_000_000).id
    assert key.id != PatternKey("acme", "demo", "EURUSD", "M5", 1_700_000_000_000).id
    with pytest.raises(ValueError, match="tenant"):
        PatternKey("ac:me", "demo", "EURUSD", "M1", 0)
    with pytest.raises(ValueError, match="symbol"):
        PatternKey("acme", "demo", "", "M1", 0)


async def test_planted_pattern_is_nearest_neighbour(store: PgVectorStore, tenant: str) -> None:
    rnd = random.Random(1)
    planted = pattern(tenant, 500_000, random_vector(rnd), forward_return=0.0123)
    others = [pattern(tenant, i, random_vector(rnd)) for i in range(1000)]
    await store.upsert([*others[:500], planted, *others[500:]])

    matches = await store.search(tenant, near(planted.vector, rnd), 10)

    assert len(matches) == 10
    assert matches[0].key == planted.key
    assert matches[0].distance < 0.01
    assert matches[0].forward_return == pytest.approx(0.0123)
    assert matches[0].close == pytest.approx(planted.close)
    assert matches[0].volatility == pytest.approx(planted.volatility)
    distances = [m.distance for m in matches]
    assert distances == sorted(distances)


async def test_other_tenants_vectors_never_come_back(store: PgVectorStore, tenant: str) -> None:
    rnd = random.Random(2)
    query = random_vector(rnd)
    intruder = other_tenant()
    # The other tenant holds exact copies of the query (distance 0) under every name the filters use.
    await store.upsert([pattern(intruder, i, query) for i in range(50)])
    await store.upsert([pattern(tenant, i, random_vector(rnd)) for i in range(20)])

    filter_sets: list[dict[str, object]] = [
        {},
        {"symbol": "EURUSD"},
        {"timeframe": "M1"},
        {"broker": "demo"},
        {"before_ms": 1_000},
        {"symbol": "EURUSD", "timeframe": "M1", "broker": "demo", "before_ms": 1_000},
    ]
    for filters in filter_sets:
        matches = await store.search(tenant, query, 30, **filters)  # type: ignore[arg-type]
        assert len(matches) == 20, filters
        assert {m.key.tenant for m in matches} == {tenant}, filters
    await store.set_forward_returns([(pattern(intruder, 0, query).key, 0.5)])
    assert await store.search(tenant, query, 10, with_forward_return_only=True) == []
    assert await store.search(other_tenant(), query, 10) == []
    assert all(m.key.tenant == intruder for m in await store.search(intruder, query, 10))


async def test_upsert_twice_is_one_row(store: PgVectorStore, tenant: str, db: asyncpg.Connection) -> None:
    rnd = random.Random(3)
    first = pattern(tenant, 42, random_vector(rnd))
    second = pattern(tenant, 42, random_vector(rnd))
    await store.upsert([first])
    await store.upsert([first])
    await store.upsert([second])
    await store.upsert([first, second])  # the same key twice in one batch: the later one wins

    assert await db.fetchval(f"SELECT count(*) FROM {TABLE} WHERE tenant = $1", tenant) == 1
    assert await db.fetchval(f"SELECT id FROM {TABLE} WHERE tenant = $1", tenant) == first.key.id
    [match] = await store.search(tenant, second.vector, 5)
    assert match.key == first.key
    assert match.distance == pytest.approx(0.0, abs=1e-6)


async def test_later_upsert_keeps_recorded_forward_return(store: PgVectorStore, tenant: str) -> None:
    rnd = random.Random(4)
    vector = random_vector(rnd)

    async def forward_return_of(window_end_ms: int) -> float | None:
        matches = await store.search(tenant, vector, 10)
        return next(m.forward_return for m in matches if m.key.window_end_ms == window_end_ms)

    await store.upsert([pattern(tenant, 1, vector, forward_return=0.5)])
    await store.upsert([pattern(tenant, 1, near(vector, rnd))])
    assert await forward_return_of(1) == pytest.approx(0.5)
    await store.upsert([pattern(tenant, 1, vector, forward_return=-0.25)])
    assert await forward_return_of(1) == pytest.approx(-0.25)

    await store.upsert([pattern(tenant, 2, vector)])
    await store.set_forward_returns([(pattern(tenant, 2, vector).key, 0.75)])
    await store.upsert([pattern(tenant, 2, vector)])
    assert await forward_return_of(2) == pytest.approx(0.75)

    await store.upsert([pattern(tenant, 3, vector, forward_return=0.3), pattern(tenant, 3, vector)])
    assert await forward_return_of(3) == pytest.approx(0.3)


async def test_set_forward_returns_then_search_only_those(store: PgVectorStore, tenant: str) -> None:
    rnd = random.Random(5)
    patterns = [pattern(tenant, i, random_vector(rnd)) for i in range(40)]
    await store.upsert(patterns)
    recorded = {p.key: i / 100 for i, p in enumerate(patterns) if i % 8 == 0}
    unknown = PatternKey(tenant, "demo", "EURUSD", "M1", 10_000)
    updates = [*recorded.items(), (unknown, 9.0)]
    await store.set_forward_returns(updates)
    await store.set_forward_returns(updates)  # idempotent

    matches = await store.search(tenant, random_vector(rnd), 40, with_forward_return_only=True)

    assert {m.key: m.forward_return for m in matches} == pytest.approx(recorded)
    assert len(await store.search(tenant, random_vector(rnd), 40)) == 40  # the unknown key was not created


async def test_filters(store: PgVectorStore, tenant: str) -> None:
    rnd = random.Random(6)
    series = [("EURUSD", "M1", "b1"), ("GBPUSD", "M1", "b2"), ("EURUSD", "H1", "b2"), ("XAUUSD", "H1", "b1")]
    patterns = []
    for i in range(60):
        symbol, timeframe, broker = series[i % len(series)]
        patterns.append(pattern(tenant, i, random_vector(rnd), symbol=symbol, timeframe=timeframe, broker=broker))
    await store.upsert(patterns)
    query = random_vector(rnd)

    def expected(**filters: object) -> set[PatternKey]:
        keys = {p.key for p in patterns}
        if "symbol" in filters:
            keys = {k for k in keys if k.symbol == filters["symbol"]}
        if "timeframe" in filters:
            keys = {k for k in keys if k.timeframe == filters["timeframe"]}
        if "broker" in filters:
            keys = {k for k in keys if k.broker == filters["broker"]}
        if "before_ms" in filters:
            keys = {k for k in keys if k.window_end_ms < filters["before_ms"]}  # type: ignore[operator]
        return keys

    for filters in [{"symbol": "EURUSD"}, {"timeframe": "H1"}, {"broker": "b2"}, {"before_ms": 30},
                    {"symbol": "EURUSD", "timeframe": "M1", "before_ms": 45}, {"symbol": "NOPE"}]:
        matches = await store.search(tenant, query, 60, **filters)  # type: ignore[arg-type]
        assert {m.key for m in matches} == expected(**filters), filters
    assert {m.key.window_end_ms for m in await store.search(tenant, query, 60, before_ms=1)} == {0}


async def test_filtered_search_returns_k_when_other_tenants_hold_most_rows(store: PgVectorStore, tenant: str) -> None:
    rnd = random.Random(7)
    query = random_vector(rnd)
    crowd = other_tenant()
    # The crowd sits right around the query; this tenant's vectors are random, so all of them are farther.
    for start in range(0, 2000, 500):
        await store.upsert([pattern(crowd, i, near(query, rnd, 0.2)) for i in range(start, start + 500)])
    mine = [pattern(tenant, i, random_vector(rnd)) for i in range(50)]
    await store.upsert(mine)

    matches = await store.search(tenant, query, 10)

    assert len(matches) == 10
    assert {m.key.tenant for m in matches} == {tenant}
    by_key = {p.key: p for p in mine}
    for match in matches:
        assert match.distance == pytest.approx(cosine_distance(query, by_key[match.key].vector), abs=1e-5)
    assert [m.distance for m in matches] == sorted(m.distance for m in matches)
    assert len(await store.search(tenant, query, 100)) == 50


async def test_bad_vectors_and_numbers_raise_and_write_nothing(store: PgVectorStore, tenant: str,
                                                                db: asyncpg.Connection) -> None:
    rnd = random.Random(8)
    good = pattern(tenant, 1, random_vector(rnd))
    bad_batches = {
        "dimension 15": [good, pattern(tenant, 2, random_vector(rnd)[:-1])],
        "NaN": [good, pattern(tenant, 2, (math.nan, *random_vector(rnd)[1:]))],
        "inf": [good, pattern(tenant, 2, (*random_vector(rnd)[1:], -math.inf))],
        "zeros": [good, pattern(tenant, 2, (0.0,) * DIM)],
        "close": [good, Pattern(good.key, good.vector, close=math.nan, volatility=0.1)],
        "forward_return": [good, pattern(tenant, 2, random_vector(rnd), forward_return=math.inf)],
    }
    for match, batch in bad_batches.items():
        with pytest.raises(ValueError, match=match):
            await store.upsert(batch)
    assert await db.fetchval(f"SELECT count(*) FROM {TABLE} WHERE tenant = $1", tenant) == 0

    with pytest.raises(ValueError, match="dimension 17"):
        await store.search(tenant, (*random_vector(rnd), 1.0), 5)
    with pytest.raises(ValueError, match="NaN"):
        await store.search(tenant, (math.nan,) * DIM, 5)
    with pytest.raises(ValueError, match="k must be"):
        await store.search(tenant, random_vector(rnd), 0)
    with pytest.raises(ValueError, match="forward_return"):
        await store.set_forward_returns([(good.key, math.nan)])


async def test_start_close_ping_and_schema_checks(stack_settings: Settings, store: PgVectorStore) -> None:
    assert 0 < await store.ping() < 5
    again = PgVectorStore(stack_settings.postgres_dsn, DIM, table=TABLE)
    with pytest.raises(RuntimeError, match="not started"):
        await again.ping()
    await again.start()
    await again.start()
    assert await again.ping() > 0
    await again.close()
    await again.close()

    with pytest.raises(ValueError, match=f"dimension {DIM}, not 8"):
        await PgVectorStore(stack_settings.postgres_dsn, 8, table=TABLE).start()
    with pytest.raises(ValueError, match="table must match"):
        PgVectorStore(stack_settings.postgres_dsn, DIM, table="patterns; DROP TABLE x")
    with pytest.raises(ValueError, match="dimension must be"):
        PgVectorStore(stack_settings.postgres_dsn, 0)
