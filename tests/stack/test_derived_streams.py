"""Patterns, correlation and strategy edges, and enriched signals, end to end on the real stack."""

from __future__ import annotations

import asyncio
import json
import math
import random
from pathlib import Path

import asyncpg
import jsonschema
import orjson
import pytest
import redis
from pgvector.asyncpg import register_vector
from referencing import Registry, Resource

from pipeline.derive.embedding import DIMENSION
from pipeline.ingest.producer import MT5Producer
from pipeline.ops.sql_client import worker_query
from pipeline.stores.graph.falkordb import FalkorGraphStore
from pipeline.stores.vectors.pgvector import PgVectorStore
from tests.topic_reader import read_topic
from tests.waiting import wait_until

pytestmark = pytest.mark.stack

T0 = 1_763_899_200_000
MINUTE = 60_000
BARS = 45
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def paths(seed: int) -> dict[str, list[float]]:
    """Minute closes: LEAD random, TWIN the same returns at another price level, SOLO independent."""
    rng = random.Random(seed)
    lead_returns = [rng.gauss(0, 1e-3) for _ in range(BARS)]
    solo_returns = [rng.gauss(0, 1e-3) for _ in range(BARS)]
    def walk(start: float, returns: list[float]) -> list[float]:
        prices = [start]
        for r in returns:
            prices.append(prices[-1] * math.exp(r))
        return prices[1:]
    return {"LEAD": walk(1.1, lead_returns), "TWIN": walk(150.0, lead_returns), "SOLO": walk(50.0, solo_returns)}


def ticks_for(tenant: str, closes: dict[str, list[float]]) -> list[dict]:
    """Per minute and symbol two ticks; the last one of each minute carries the close. Then a closer tick."""
    ticks = []
    for symbol, series in closes.items():
        for minute, close in enumerate(series):
            for offset, price in ((1_000, close * 0.9999), (59_000, close)):
                ticks.append(dict(tenant=tenant, broker="demo", symbol=symbol, time_msc=T0 + minute * MINUTE + offset,
                                  bid=round(price, 6), ask=round(price * 1.00002, 6), flags=6))
        ticks.append(dict(tenant=tenant, broker="demo", symbol=symbol, time_msc=T0 + BARS * MINUTE + 500,
                          bid=round(series[-1], 6), ask=round(series[-1] * 1.00002, 6), flags=6))
    return ticks


async def produce(settings, ticks=(), signals=()) -> None:
    async with MT5Producer(settings) as producer:
        for tick in ticks:
            await producer.send_tick(**tick)
        for signal in signals:
            await producer.send_signal(**signal)


def count(worker, sql: str) -> int:
    return next(iter(orjson.loads(worker_query(worker.settings, sql)[0]).values()))


async def vector_search(settings, tenant: str, vector, k: int):
    store = PgVectorStore(settings.postgres_connection_dsn, DIMENSION)
    await store.start()
    try:
        return await store.search(tenant, vector, k)
    finally:
        await store.close()


async def stored_embedding(settings, tenant: str, symbol: str, window_end_ms: int) -> list[float] | None:
    connection = await asyncpg.connect(settings.postgres_connection_dsn)
    try:
        await register_vector(connection)
        row = await connection.fetchrow(
            "SELECT embedding FROM patterns WHERE tenant = $1 AND symbol = $2 AND window_end = $3",
            tenant, symbol, window_end_ms)
        return None if row is None else row["embedding"].to_list()
    finally:
        await connection.close()


async def graph_call(settings, method: str, *args, **kwargs):
    graph = FalkorGraphStore(settings.graph_connection_url)
    await graph.start()
    try:
        return await getattr(graph, method)(*args, **kwargs)
    finally:
        await graph.close()


@pytest.fixture
def derived_worker(worker_factory):
    return worker_factory(candle_timeframes="1m", correlation_window_bars=30, correlation_min_samples=10,
                          pattern_horizon_bars=3)


def test_patterns_and_correlations_from_closed_bars(stack_settings, derived_worker, tenant):
    other = tenant + "x"
    closes = paths(seed=3)
    asyncio.run(produce(stack_settings, ticks_for(tenant, closes) + ticks_for(other, closes)))
    wait_until(lambda: count(derived_worker, f"SELECT count() FROM tickwire.candles FINAL WHERE tenant IN ('{tenant}', '{other}')")
               == 2 * 3 * BARS, timeout_s=240, what="every bar")  # a new group reads the backlog first
    last_end = T0 + BARS * MINUTE

    # patterns: one per window of 33 bars; the twin's shape is the lead's; the other tenant never comes back
    vector = wait_until(lambda: asyncio.run(stored_embedding(stack_settings, tenant, "LEAD", last_end)),
                        timeout_s=30, what="the lead's latest pattern")
    matches = asyncio.run(vector_search(stack_settings, tenant, vector, k=5))
    assert {m.key.symbol for m in matches[:2]} == {"LEAD", "TWIN"}
    assert all(m.key.window_end_ms == last_end for m in matches[:2]) and matches[1].distance < 0.01
    assert all(m.key.tenant == tenant for m in matches)
    assert all(m.key.tenant == other for m in asyncio.run(vector_search(stack_settings, other, vector, k=50)))
    with_forward = [m for m in asyncio.run(vector_search(stack_settings, tenant, vector, k=50)) if m.forward_return is not None]
    assert with_forward, "windows 3 bars before the end have their forward return"

    # correlation edges: twins near 1; the independent one below the threshold
    neighbors = wait_until(lambda: asyncio.run(graph_call(stack_settings, "neighbors", tenant, "LEAD", depth=1, min_weight=0.5)),
                           timeout_s=30, what="LEAD's neighbours")
    assert [(n.symbol, n.timeframe) for n in neighbors] == [("TWIN", "1m")]
    assert neighbors[0].weight > 0.99
    assert "SOLO" not in {n.symbol for n in asyncio.run(graph_call(stack_settings, "neighbors", tenant, "SOLO", depth=2, min_weight=0.5))}


def test_signal_stored_once_enriched_once_with_cached_price(stack_settings, derived_worker, tenant):
    tick = dict(tenant=tenant, broker="demo", symbol="EURUSD", time_msc=T0, bid=1.0812, ask=1.0814, flags=6)
    asyncio.run(produce(stack_settings, [tick]))
    cache = redis.Redis.from_url(stack_settings.cache_connection_url, decode_responses=True)
    wait_until(lambda: cache.hget(f"tw:{tenant}:tick:demo:EURUSD", "bid"), timeout_s=30, what="the hot key")
    signal = dict(id="sig-1", tenant=tenant, broker="demo", strategy="meanrev", symbol="EURUSD", time_msc=T0 + 5,
                  action="buy", confidence=0.8, price=1.0810, sl=1.07, tp=1.09, reason="test")
    second = dict(signal, id="sig-2", action="sell", confidence=0.4, time_msc=T0 + 9, price=1.0815)
    asyncio.run(produce(stack_settings, signals=[signal]))
    asyncio.run(produce(stack_settings, signals=[signal, second]))  # the first again: redelivery

    wait_until(lambda: count(derived_worker, f"SELECT count() FROM tickwire.signals FINAL WHERE tenant = '{tenant}'") == 2,
               timeout_s=30, what="two stored signals")
    messages = [orjson.loads(v) for _, v in
                asyncio.run(read_topic(stack_settings, "signals.enriched.v1", f"{tenant}:".encode(), 3, timeout_s=10))]
    assert sorted(m["signal"]["id"] for m in messages) == ["sig-1", "sig-2"]
    first = next(m for m in messages if m["signal"]["id"] == "sig-1")
    assert first["signal"]["time_msc"] == T0 + 5 and isinstance(first["signal"]["time_msc"], int)
    assert first["market"]["bid"] == 1.0812 and first["market"]["ask"] == 1.0814
    assert first["market"]["slippage"] == pytest.approx(1.0814 - 1.0810)
    assert first["market"]["tick_age_ms"] == 5

    registry = Registry().with_resources(
        (f"urn:tickwire:schema:{name}", Resource.from_contents(json.loads((SCHEMAS / f"{name}.json").read_text())))
        for name in ("signal.v1", "signal.enriched.v1"))
    schema = json.loads((SCHEMAS / "signal.enriched.v1.json").read_text())
    for message in messages:
        jsonschema.Draft202012Validator(schema, registry=registry).validate(message)

    edges = wait_until(lambda: asyncio.run(graph_call(stack_settings, "strategies", tenant, "EURUSD")),
                       timeout_s=30, what="the strategy edge")
    assert [(e.strategy, e.signals, e.last_action) for e in edges] == [("meanrev", 2, "sell")]
    assert edges[0].mean_confidence == pytest.approx(0.6)


def test_every_window_gets_its_pattern_when_many_bars_close_at_once(stack_settings, worker_factory, tenant):
    """A backlog (catching up, a replay) closes a long run of bars of one series in one checkpoint: every
    window of 33 bars still gets its pattern, and every window ``horizon`` bars before the end its forward return."""
    bars, horizon = 120, 3
    rng = random.Random(11)
    ticks = []
    for symbol, start in (("LONGA", 1.1), ("LONGB", 90.0)):
        price = start
        for minute in range(bars):
            price *= math.exp(rng.gauss(0, 1e-3))
            for offset in (1_000, 59_000):
                ticks.append(dict(tenant=tenant, broker="demo", symbol=symbol, time_msc=T0 + minute * MINUTE + offset,
                                  bid=round(price, 6), ask=round(price * 1.00002, 6), flags=6))
        ticks.append(dict(tenant=tenant, broker="demo", symbol=symbol, time_msc=T0 + bars * MINUTE + 500,
                          bid=round(price, 6), ask=round(price * 1.00002, 6), flags=6))
    asyncio.run(produce(stack_settings, ticks))  # before the worker starts: a backlog
    worker = worker_factory(candle_timeframes="1m", pattern_horizon_bars=horizon)
    wait_until(lambda: count(worker, f"SELECT count() FROM tickwire.candles FINAL WHERE tenant = '{tenant}'") == 2 * bars,
               timeout_s=120, what="every bar")
    windows = 2 * (bars - 32)
    wait_until(lambda: asyncio.run(pattern_counts(stack_settings, tenant)) == (windows, windows - 2 * horizon),
               timeout_s=60, what="a pattern for every window and a forward return for every window but the last 3")


async def pattern_counts(settings, tenant: str) -> tuple[int, int]:
    connection = await asyncpg.connect(settings.postgres_connection_dsn)
    try:
        row = await connection.fetchrow(
            "SELECT count(*) AS n, count(forward_return) AS f FROM patterns WHERE tenant = $1", tenant)
        return row["n"], row["f"]
    finally:
        await connection.close()
