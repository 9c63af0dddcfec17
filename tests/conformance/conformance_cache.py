"""The hot-cache role's conformance suite: the sinks that write the Redis-protocol cache, on every reachable server.

Backends: the local stack's Valkey always; DragonflyDB when
``TICKWIRE_TEST_DRAGONFLY_URL`` is ``redis://host:port/db`` (skipped with that
reason otherwise). What differs between the two and matters here: the
newest-wins compare-and-write is one Lua script (Dragonfly runs scripts
only on the keys they declare, which this one does), TTLs, pipelines.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio as redis

from pipeline.contracts.cache_keys import hot_key
from pipeline.derive.enrichment import PublishedMarkers
from pipeline.sinks.hotcache import KEYS_PER_CALL, HotTickCache

DRAGONFLY_URL = os.environ.get("TICKWIRE_TEST_DRAGONFLY_URL")
TTL_S = 3_600


@pytest.fixture(params=["valkey", "dragonfly"])
def cache_url(request: pytest.FixtureRequest) -> str:
    if request.param == "valkey":
        return request.getfixturevalue("stack_settings").cache_connection_url
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


@pytest.mark.stack
async def test_ticks_offered_during_a_flush_are_written_by_the_next_one(cache: redis.Redis, tenant: str) -> None:
    """The hot-tick agent offers ticks while a checkpoint flushes the cache: none may be lost, and a
    flush returns only once everything offered before it was called is written."""
    sink = HotTickCache(cache, TTL_S)
    first, second = hot_key(tenant, "demo", "EURUSD"), hot_key(tenant, "demo", "GBPUSD")
    offer(sink, first, 1_000, 1, 1.1)
    await cache.execute_command("CLIENT", "PAUSE", "300", "WRITE")  # hold the first flush on the server
    in_flight = asyncio.create_task(sink.flush())
    while sink.pending:  # until the first flush has taken its buffer
        await asyncio.sleep(0.001)
    offer(sink, second, 1_000, 2, 1.2)
    offer(sink, first, 2_000, 3, 1.3)
    assert not in_flight.done()
    await in_flight
    assert sink.pending == 2  # still buffered, not dropped with the first flush's
    await sink.flush()
    assert sink.pending == 0
    assert (await cache.hget(first, "bid"), await cache.hget(second, "bid")) == ("1.3", "1.2")


@pytest.mark.stack
async def test_a_failed_flush_keeps_its_ticks(tenant: str) -> None:
    down = redis.Redis(host="127.0.0.1", port=_closed_port(), socket_connect_timeout=1)
    sink = HotTickCache(down, TTL_S)
    keys = [hot_key(tenant, "demo", f"S{i}") for i in range(3)]
    for i, key in enumerate(keys):
        offer(sink, key, 1_000, i, 1.0)
    with pytest.raises(redis.ConnectionError):
        await sink.flush()
    assert sink.pending == len(keys)
    await down.aclose()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
