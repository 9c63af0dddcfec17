"""The vector role's conformance suite: the :class:`~pipeline.stores.vectors.base.VectorStore` contract, written once.

A backend's test class subclasses :class:`VectorStoreConformance` and
provides two fixtures:

- ``store``: a started store of dimension :data:`DIM` (class scope), private
  to the test run (its own table or collection);
- ``make_store``: ``make_store(dimension)`` builds another, not started, store
  over the same table or collection (for the lifecycle and schema checks).

Every test writes under its own tenant(s) (the ``tenant`` fixture), so tests
never see each other's vectors. Only the role's methods are used to look at
what is stored; a backend's own tests may look behind it.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable, Sequence

import pytest

from pipeline.stores.vectors import MAX_K, Pattern, PatternKey, VectorStore

DIM = 16


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


class VectorStoreConformance:
    """The contract of :class:`VectorStore`; subclasses bind it to a backend (see the module docstring)."""

    async def test_planted_pattern_is_nearest_neighbour(self, store: VectorStore, tenant: str) -> None:
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

    async def test_other_tenants_vectors_never_come_back(self, store: VectorStore, tenant: str) -> None:
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

    async def test_upsert_twice_is_one_pattern(self, store: VectorStore, tenant: str) -> None:
        rnd = random.Random(3)
        first = pattern(tenant, 42, random_vector(rnd))
        second = pattern(tenant, 42, random_vector(rnd))
        await store.upsert([first])
        await store.upsert([first])
        await store.upsert([second])
        await store.upsert([first, second])  # the same key twice in one batch: the later one wins

        [match] = await store.search(tenant, second.vector, MAX_K)
        assert match.key == first.key
        assert match.distance == pytest.approx(0.0, abs=1e-6)

    async def test_later_upsert_keeps_recorded_forward_return(self, store: VectorStore, tenant: str) -> None:
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

    async def test_set_forward_returns_then_search_only_those(self, store: VectorStore, tenant: str) -> None:
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
        await store.set_forward_returns([(PatternKey(other_tenant(), "demo", "EURUSD", "M1", 1), 0.5)])  # no such tenant

    async def test_filters(self, store: VectorStore, tenant: str) -> None:
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

    async def test_filtered_search_returns_k_when_other_tenants_hold_most_rows(self, store: VectorStore, tenant: str) -> None:
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

    async def test_bad_vectors_and_numbers_raise_and_write_nothing(self, store: VectorStore, tenant: str) -> None:
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
        assert await store.search(tenant, good.vector, MAX_K) == []

        with pytest.raises(ValueError, match="dimension 17"):
            await store.search(tenant, (*random_vector(rnd), 1.0), 5)
        with pytest.raises(ValueError, match="NaN"):
            await store.search(tenant, (math.nan,) * DIM, 5)
        with pytest.raises(ValueError, match="k must be"):
            await store.search(tenant, random_vector(rnd), 0)
        with pytest.raises(ValueError, match="k must be"):
            await store.search(tenant, random_vector(rnd), MAX_K + 1)
        with pytest.raises(ValueError, match="forward_return"):
            await store.set_forward_returns([(good.key, math.nan)])

    async def test_start_close_ping_and_dimension_check(
        self, store: VectorStore, make_store: Callable[[int], VectorStore]
    ) -> None:
        assert store.dimension == DIM
        assert 0 < await store.ping() < 5
        again = make_store(DIM)
        with pytest.raises(RuntimeError, match="not started"):
            await again.ping()
        await again.start()
        await again.start()
        assert await again.ping() > 0
        await again.close()
        await again.close()
        with pytest.raises(ValueError, match=f"dimension {DIM}, not 8"):
            await make_store(8).start()
