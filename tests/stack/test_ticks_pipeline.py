"""The tick path end to end on the real local stack: broker -> worker -> chDB + Valkey + DLQ."""

from __future__ import annotations

import asyncio
import random
import signal
import threading

import orjson
import pytest
import redis

from pipeline.config import Settings
from pipeline.contracts.topics import TICKS_TOPIC
from pipeline.ingest.producer import MT5Producer, encode_tick
from pipeline.ops.sql_client import worker_query
from tests.topic_reader import read_topic
from tests.waiting import wait_until

pytestmark = pytest.mark.stack

BASE_MS = 1_763_900_000_000


def make_ticks(tenants: list[str], symbols: list[str], per_key: int, seed: int = 1) -> list[dict]:
    """Valid ticks; per key strictly increasing time. Shuffled across keys, ordered within a key."""
    rng = random.Random(seed)
    ticks = []
    for tenant in tenants:
        for s, symbol in enumerate(symbols):
            mid = 1.0 + s
            for i in range(per_key):
                mid += rng.uniform(-1e-4, 1e-4)
                ticks.append(dict(tenant=tenant, broker="demo", symbol=symbol, time_msc=BASE_MS + i * 10,
                                  bid=round(mid, 5), ask=round(mid + 2e-4, 5), volume=i, flags=6))
    return ticks


async def produce(settings: Settings, ticks: list[dict], raw: list[tuple[bytes, bytes]] = (), chunk_pause_s: float = 0) -> None:
    """Produce ``ticks`` then ``raw``; with ``chunk_pause_s``, spread over time in chunks of 2000."""
    async with MT5Producer(settings, validate=False) as producer:
        for i, tick in enumerate(ticks):
            await producer.send_tick(**tick)
            if chunk_pause_s and i % 2000 == 1999:
                await producer.flush()
                await asyncio.sleep(chunk_pause_s)
        for key, value in raw:
            await producer.send_raw(TICKS_TOPIC, key, value)


def scalar(worker, sql: str) -> int:
    lines = worker_query(worker.settings, sql)
    assert lines is not None, "worker did not answer"
    return next(iter(orjson.loads(lines[0]).values()))


def visible_rows(worker, tenants: list[str]) -> int:
    names = ",".join(f"'{t}'" for t in tenants)
    return scalar(worker, f"SELECT count() FROM tickwire.ticks FINAL WHERE tenant IN ({names})")


def newest_per_key(ticks: list[dict]) -> dict[str, dict]:
    newest: dict[str, dict] = {}
    for tick in ticks:
        key = f"tw:{tick['tenant']}:tick:{tick['broker']}:{tick['symbol']}"
        if key not in newest or tick["time_msc"] > newest[key]["time_msc"]:
            newest[key] = tick
    return newest


def test_valid_ticks_stored_once_hot_keys_newest_and_malformed_to_dlq(stack_settings, worker_factory, tenant):
    tenants = [tenant + "a", tenant + "b"]
    ticks = make_ticks(tenants, ["EURUSD", "XAUUSD", "US30"], per_key=400)
    good = encode_tick(tenant=tenants[0], broker="demo", symbol="EURUSD", time_msc=BASE_MS, bid=1.0, ask=1.1)
    key = f"{tenants[0]}:demo:BAD".encode()
    malformed = [
        (key, b"{not json"),
        (key, good.replace(b'"bid":1.0', b'"bid":"1.0"')),                  # wrong type
        (key, orjson.dumps({k: v for k, v in orjson.loads(good).items() if k != "ask"})),  # missing field
        (key, good.replace(b'"v":1', b'"v":2')),                             # unknown version
        (key, good[:-1] + b',"pad":"' + b"x" * 70_000 + b'"}'),              # oversize
        (key, b"\xff\xfe\x00garbage"),                                       # not UTF-8
    ]
    worker = worker_factory()
    asyncio.run(produce(stack_settings, ticks, malformed))

    wait_until(lambda: visible_rows(worker, tenants) == len(ticks), timeout_s=60, what=f"{len(ticks)} rows")
    cache = redis.Redis.from_url(stack_settings.cache_connection_url, decode_responses=True)
    for hot_key, tick in newest_per_key(ticks).items():
        cached = cache.hgetall(hot_key)
        assert int(cached["time_msc"]) == tick["time_msc"] and float(cached["bid"]) == tick["bid"], hot_key
        assert 0 < cache.pttl(hot_key) <= stack_settings.hot_key_ttl_s * 1000

    letters = [orjson.loads(value) for _, value in asyncio.run(read_topic(stack_settings, "dlq.v1", key, len(malformed)))]
    assert sorted(letter["reason"] for letter in letters) == sorted(
        ["malformed_json", "schema_violation", "schema_violation", "unknown_version", "oversize", "malformed_json"]
    )
    assert all(letter["topic"] == TICKS_TOPIC and letter["error"] for letter in letters)
    assert visible_rows(worker, tenants) == len(ticks)  # the rejects added nothing


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_restart_mid_stream_keeps_exactly_one_row_per_tick(stack_settings, worker_factory, tenant, sig):
    tenants = [tenant]
    ticks = make_ticks(tenants, [f"S{i}" for i in range(20)], per_key=3000)  # 60k ticks
    worker = worker_factory()
    producing = threading.Thread(target=lambda: asyncio.run(produce(stack_settings, ticks, chunk_pause_s=0.1)))
    producing.start()
    try:
        seen = wait_until(lambda: visible_rows(worker, tenants), timeout_s=60, what="the first rows")
        worker.stop(sig)
        assert seen < len(ticks), "the worker must stop mid-stream"
        restarted = worker_factory()
    finally:
        producing.join()
    wait_until(lambda: visible_rows(restarted, tenants) == len(ticks), timeout_s=90, what=f"{len(ticks)} rows")
    identities = scalar(restarted, f"SELECT uniqExact(symbol, time) FROM tickwire.ticks FINAL WHERE tenant = '{tenant}'")
    assert identities == len(ticks)
    cache = redis.Redis.from_url(stack_settings.cache_connection_url, decode_responses=True)
    for hot_key, tick in newest_per_key(ticks).items():
        assert int(cache.hget(hot_key, "time_msc")) == tick["time_msc"]


def test_older_tick_never_overwrites_newer_hot_key(stack_settings, worker_factory, tenant):
    newer = dict(tenant=tenant, broker="demo", symbol="EURUSD", time_msc=BASE_MS + 5_000, bid=1.2, ask=1.3)
    older = dict(newer, time_msc=BASE_MS, bid=1.0, ask=1.1)
    worker = worker_factory()
    asyncio.run(produce(stack_settings, [newer]))
    wait_until(lambda: visible_rows(worker, [tenant]) == 1, timeout_s=30, what="the newer tick")
    asyncio.run(produce(stack_settings, [older]))
    wait_until(lambda: visible_rows(worker, [tenant]) == 2, timeout_s=30, what="the older tick stored")
    cache = redis.Redis.from_url(stack_settings.cache_connection_url, decode_responses=True)
    cached = cache.hgetall(f"tw:{tenant}:tick:demo:EURUSD")
    assert int(cached["time_msc"]) == newer["time_msc"] and float(cached["bid"]) == 1.2
