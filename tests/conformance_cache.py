"""The hot-cache role's conformance suite: the sinks that write the Redis-protocol cache, on every reachable server.

Backends: the local stack's Valkey always; DragonflyDB when
``TICKWIRE_TEST_DRAGONFLY_URL`` is ``redis://host:port/db`` (skipped with that
reason otherwise). What differs between the two and matters here: the
newest-wins compare-and-write is one Lua script (Dragonfly runs scripts
only on the keys they declare, which this one does), TTLs, pipelines.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio as redis

from pipeline.signal_enricher import PublishedMarkers
from pipeline.sinks.hotcache import KEYS_PER_CALL, HotTickCache, hot_key

DRAGONFLY_URL = os.environ.get("TICKWIRE_TEST_DRAGONFLY_URL")
TTL_S = 3_600


@pytest.fixture(params=["valkey", "dragonfly"])
def cache_url(request: pytest.FixtureRequest) -> str:
    if request.param == "valkey":
        return request.getfixturevalue("stack_settings").cache_url
    if DRAGONFLY_URL is None:
        pytest.skip("TICKWIRE_TEST_DRAGONFLY_URL is not set: the DragonflyDB run needs a live server")
    return DRAGONFLY_URL


@pytest_asyncio.fixture
async def cache(cache_url: str) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(cache_url, decode_responses=True, socket_timeout=5)
    yield client
    await client.aclose()


def offer(sink: HotTickCache, key: str, time_msc: int, offset: int, bid: float) -> None:
    sink.offer(key, time_msc, offset, bid, bid + 0.0002, 0.0, 1, 6)


@pytest.mark.stack
async def test_hot_key_takes_only_newer_ticks(cache: redis.Redis, tenant: str) -> None:
    key = hot_key(tenant, "demo", "EURUSD")
    sink = HotTickCache(cache, TTL_S)
    for time_msc, offset, bid, expected_bid in [
        (1_000, 10, 1.10, "1.1"),   # first write
        (900, 11, 1.20, "1.1"),     # older tick (a late or redelivered one): ignored
        (1_000, 9, 1.30, "1.1"),    # same time, smaller offset: ignored
        (1_000, 12, 1.40, "1.4"),   # same time, greater offset: newer
        (2_000, 1, 1.50, "1.5"),    # newer time wins whatever the offset
    ]:
        offer(sink, key, time_msc, offset, bid)
        await sink.flush()
        assert (await cache.hgetall(key))["bid"] == expected_bid
    stored = await cache.hgetall(key)
    assert (stored["time_msc"], stored["offset"]) == ("2000", "1")
    assert 0 < await cache.pttl(key) <= TTL_S * 1000


@pytest.mark.stack
async def test_many_keys_in_one_flush(cache: redis.Redis, tenant: str) -> None:
    sink = HotTickCache(cache, TTL_S)
    keys = [hot_key(tenant, "demo", f"S{i}") for i in range(KEYS_PER_CALL * 2 + 7)]  # several script calls
    for i, key in enumerate(keys):
        offer(sink, key, 1_000 + i, i, 1.0 + i / 1000)
    await sink.flush()
    assert sink.pending == 0
    pipe = cache.pipeline(transaction=False)
    for key in keys:
        pipe.hget(key, "time_msc")
    assert await pipe.execute() == [str(1_000 + i) for i in range(len(keys))]


@pytest.mark.stack
async def test_published_markers_expire(cache: redis.Redis, tenant: str) -> None:
    markers = PublishedMarkers(cache, TTL_S)
    keys = [f"tw:{tenant}:published:{i}" for i in range(3)]
    markers.add(keys)
    markers.add(keys[:1])  # the same marker twice is one key
    await markers.flush()
    assert markers.pending == 0
    assert await cache.exists(*keys) == 3
    assert all(0 < ttl <= TTL_S for ttl in [await cache.ttl(k) for k in keys])
