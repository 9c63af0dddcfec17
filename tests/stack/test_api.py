"""The query API on a real worker: every endpoint returns what the pipeline stored, one tenant never sees
another's data, bad input is a 400 naming the parameter, and /metrics and /openapi.json are served."""

from __future__ import annotations

import asyncio
import math
from typing import Any, Iterator

import aiohttp
import asyncpg
import orjson
import pytest
from pgvector.asyncpg import register_vector

from pipeline.api.app import document_bytes
from pipeline.config import Settings
from pipeline.derive.embedding import DIMENSION
from pipeline.ops.sql_client import worker_query
from pipeline.stores.graph.falkordb import FalkorGraphStore
from pipeline.stores.vectors.pgvector import PgVectorStore
from tests.api_support import BARS, MINUTE, SYMBOLS, T0, ApiClient, World, api_world
from tests.waiting import wait_until

pytestmark = pytest.mark.stack

NO_CACHE = {"Cache-Control": "no-cache"}


@pytest.fixture(scope="module")
def world(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from api_world(stack_settings, tmp_path_factory)


LAST_END = T0 + BARS * MINUTE


async def stored_embedding(world: World, tenant: str, symbol: str, broker: str, window_end_ms: int) -> list[float]:
    connection = await asyncpg.connect(world.settings.postgres_connection_dsn)
    try:
        await register_vector(connection)
        row = await connection.fetchrow(
            "SELECT embedding FROM patterns WHERE tenant = $1 AND symbol = $2 AND broker = $3 AND window_end = $4",
            tenant, symbol, broker, window_end_ms)
        assert row is not None, f"no stored pattern of {tenant} {symbol} at {window_end_ms}"
        return row["embedding"].to_list()
    finally:
        await connection.close()


async def direct_search(world: World, tenant: str, vector: list[float], k: int, **filters: Any):
    store = PgVectorStore(world.settings.postgres_connection_dsn, DIMENSION)
    await store.start()
    try:
        return await store.search(tenant, vector, k, **filters)
    finally:
        await store.close()


async def direct_graph(world: World, method: str, *args: Any, **kwargs: Any):
    graph = FalkorGraphStore(world.settings.graph_connection_url)
    await graph.start()
    try:
        return await getattr(graph, method)(*args, **kwargs)
    finally:
        await graph.close()


def stored_rows(world: World, sql: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in worker_query(world.settings, sql) or []]


# --- every endpoint returns what the pipeline stored ---------------------------------------------------


def test_latest_tick_is_the_newest_produced(world: World) -> None:
    a = world.a
    client = world.client(a.key)
    for symbol in (*SYMBOLS, "TIES"):
        newest = sorted(a.ticks_of(symbol), key=lambda t: t["time_msc"])[-1]  # TIES: one time, the last one sent wins
        assert client.data("/v1/ticks/latest", symbol=symbol, broker="demo") == [{
            "broker": "demo", "symbol": symbol, "time_msc": newest["time_msc"], "bid": newest["bid"],
            "ask": newest["ask"], "last": 0.0, "volume": 0, "flags": 6}]
    assert client.data("/v1/ticks/latest", symbol="LEAD", broker="elsewhere") == []


def test_ticks_pages_are_every_stored_tick_newest_first(world: World) -> None:
    a = world.a
    client = world.client(a.key)
    for symbol in (*SYMBOLS, "TIES"):
        produced = sorted(a.ticks_of(symbol), key=lambda t: (-t["time_msc"], t["bid"], t["ask"]))
        for limit in (5, 1000):
            rows = client.pages("/v1/ticks", symbol=symbol, limit=limit)
            assert [(r["time_msc"], r["bid"], r["ask"], r["flags"], r["broker"], r["symbol"]) for r in rows] == \
                   [(t["time_msc"], t["bid"], t["ask"], 6, "demo", symbol) for t in produced]
    lo, hi = T0 + 10 * MINUTE, T0 + 20 * MINUTE
    rows = client.pages("/v1/ticks", symbol="LEAD", limit=4, **{"from": lo, "to": hi})
    assert [r["time_msc"] for r in rows] == sorted((t["time_msc"] for t in a.ticks_of("LEAD") if lo <= t["time_msc"] < hi),
                                                    reverse=True)
    first = client.get("/v1/ticks", symbol="LEAD", limit=3).body
    assert len(first["data"]) == 3 and first["next_cursor"] is not None
    assert client.get("/v1/ticks", symbol="LEAD", limit=3).body == first, "a repeated page is the same page"
    assert client.data("/v1/ticks", symbol="LEAD", broker="elsewhere") == []
    assert client.data("/v1/ticks", symbol="NOSUCH") == []


def test_candles_are_the_stored_bars(world: World) -> None:
    a = world.a
    client = world.client(a.key)
    for symbol in SYMBOLS:
        rows = client.pages("/v1/candles", symbol=symbol, timeframe="1m", limit=10)
        stored = stored_rows(world, f"""
            SELECT broker, symbol, timeframe, toUnixTimestamp64Milli(start) AS start_ms, toUnixTimestamp64Milli(end) AS end_ms,
                   open, high, low, close, bid_close, ask_close, spread_avg, spread_min, spread_max, ticks, volume, volume_real,
                   indicators
            FROM tickwire.candles FINAL WHERE tenant = '{a.tenant}' AND symbol = '{symbol}' AND timeframe = '1m'
            ORDER BY start DESC""")
        assert rows == stored and len(rows) == BARS
        assert "sma_20" in rows[0]["indicators"] and "sma_20" not in rows[-1]["indicators"]
        indicators = client.pages("/v1/indicators", symbol=symbol, timeframe="1m", limit=10)
        assert [(r["start_ms"], r["indicators"]) for r in indicators] == [(r["start_ms"], r["indicators"]) for r in rows]
        last_of_minute = {t["time_msc"] // MINUTE * MINUTE: t for t in sorted(a.ticks_of(symbol), key=lambda t: t["time_msc"])}
        for row in rows:
            tick = last_of_minute[row["start_ms"]]
            assert row["close"] == pytest.approx((tick["bid"] + tick["ask"]) / 2) and row["ticks"] == 2
    window = client.data("/v1/candles", symbol="LEAD", timeframe="1m", limit=1000, **{"from": T0 + MINUTE, "to": T0 + 4 * MINUTE})
    assert [r["start_ms"] for r in window] == [T0 + 3 * MINUTE, T0 + 2 * MINUTE, T0 + MINUTE]


def test_signals_are_the_stored_signals(world: World) -> None:
    a = world.a
    client = world.client(a.key)

    def expected(**match: str) -> list[dict[str, Any]]:
        chosen = [s for s in a.signals if all(s[k] == v for k, v in match.items())]
        return [{"id": s["id"], "broker": s["broker"], "strategy": s["strategy"], "symbol": s["symbol"],
                 "time_msc": s["time_msc"], "action": s["action"], "confidence": s["confidence"], "price": s["price"],
                 "sl": s.get("sl"), "tp": s.get("tp"), "reason": s.get("reason")}
                for s in sorted(chosen, key=lambda s: (-s["time_msc"], s["id"]))]

    assert client.data("/v1/signals", limit=1000) == expected()
    assert client.data("/v1/signals", symbol="LEAD") == expected(symbol="LEAD")
    assert client.data("/v1/signals", strategy="breakout") == expected(strategy="breakout")
    assert client.data("/v1/signals", symbol="LEAD", strategy="meanrev", broker="demo") == expected(symbol="LEAD", strategy="meanrev")
    assert client.pages("/v1/signals", limit=1) == expected()
    assert client.data("/v1/signals", **{"from": T0 + 7 * MINUTE, "to": T0 + 9 * MINUTE}) == \
           [s for s in expected() if T0 + 7 * MINUTE <= s["time_msc"] < T0 + 9 * MINUTE]
    assert client.data("/v1/signals", strategy="nosuch") == []


def test_similar_patterns_are_the_vector_stores_answer_for_the_current_shape(world: World) -> None:
    a = world.a
    client = world.client(a.key)
    answer = client.get("/v1/patterns/similar", symbol="LEAD", timeframe="1m", k=5).body
    assert answer["query"] == {"broker": "demo", "symbol": "LEAD", "timeframe": "1m", "window_end_ms": LAST_END}
    vector = asyncio.run(stored_embedding(world, a.tenant, "LEAD", "demo", LAST_END))
    direct = asyncio.run(direct_search(world, a.tenant, vector, 5, timeframe="1m", before_ms=LAST_END,
                                       with_forward_return_only=True))
    assert [(m["symbol"], m["window_end_ms"], m["forward_return"]) for m in answer["data"]] == \
           [(d.key.symbol, d.key.window_end_ms, d.forward_return) for d in direct]
    assert [m["distance"] for m in answer["data"]] == pytest.approx([d.distance for d in direct], abs=1e-6)
    assert all(m["window_end_ms"] < LAST_END and m["forward_return"] is not None for m in answer["data"])
    assert client.get("/v1/patterns/similar", symbol="TIES", timeframe="1m").body == {"query": None, "data": []}


def test_concurrent_uncached_reads_each_get_the_answer_they_get_alone(world: World) -> None:
    """Requests that differ only by symbol share one query (pipeline.api.batched_reads): each still gets its own
    page, another tenant's requests in flight at the same moment change nothing, cursors and limits are kept apart."""
    asks: list[tuple[str, str, dict[str, Any]]] = []
    for data in (world.a, world.b):
        for symbol in (*SYMBOLS, "TIES", "NOSUCH"):
            asks += [(data.key, "/v1/ticks", {"symbol": symbol, "limit": 3}),
                     (data.key, "/v1/ticks", {"symbol": symbol, "limit": 7}),
                     (data.key, "/v1/candles", {"symbol": symbol, "timeframe": "1m", "limit": 4}),
                     (data.key, "/v1/indicators", {"symbol": symbol, "timeframe": "1m", "limit": 2, "names": "sma_20"}),
                     (data.key, "/v1/patterns/similar", {"symbol": symbol, "timeframe": "1m", "k": 3})]
        first = world.client(data.key).get("/v1/ticks", symbol="LEAD", limit=3).body
        asks.append((data.key, "/v1/ticks", {"symbol": "LEAD", "limit": 3, "cursor": first["next_cursor"]}))
    alone = [world.client(key).request("GET", path, params, headers=NO_CACHE).body for key, path, params in asks]

    async def together() -> list[Any]:
        async with aiohttp.ClientSession() as session:
            async def get(key: str, path: str, params: dict[str, Any]) -> Any:
                headers = {"Authorization": f"Bearer {key}", **NO_CACHE}
                async with session.get(world.settings.api_url + path, params=params, headers=headers) as response:
                    assert response.status == 200, await response.text()
                    return await response.json()

            return await asyncio.gather(*(get(key, path, params) for key, path, params in asks))

    assert asyncio.run(together()) == alone
    assert any(answer["data"] for answer in alone) and any(not answer["data"] for answer in alone)


def test_pattern_search_finds_the_twin_and_matches_the_vector_store(world: World) -> None:
    a = world.a
    client = world.client(a.key)
    vector = asyncio.run(stored_embedding(world, a.tenant, "LEAD", "demo", LAST_END))
    answer = client.request("POST", "/v1/patterns/search", body={"vector": vector, "k": 4, "timeframe": "1m"})
    assert answer.status == 200, answer.body
    found = answer.body["data"]
    assert {(m["symbol"], m["window_end_ms"]) for m in found[:2]} == {("LEAD", LAST_END), ("TWIN", LAST_END)}
    assert found[1]["distance"] < 0.01
    direct = asyncio.run(direct_search(world, a.tenant, vector, 4, timeframe="1m"))
    assert {(m["symbol"], m["window_end_ms"]) for m in found} == {(d.key.symbol, d.key.window_end_ms) for d in direct}
    assert [m["distance"] for m in found] == pytest.approx([d.distance for d in direct], abs=1e-6)
    scaled = client.request("POST", "/v1/patterns/search", body={"vector": [x * 1e300 for x in vector], "k": 4}).body["data"]
    assert [(m["symbol"], m["window_end_ms"]) for m in scaled[:2]] == [(m["symbol"], m["window_end_ms"]) for m in found[:2]]
    only_twin = client.request("POST", "/v1/patterns/search", body={"vector": vector, "symbol": "TWIN", "k": 3,
                                                                     "before_ms": LAST_END}).body["data"]
    assert only_twin and all(m["symbol"] == "TWIN" and m["window_end_ms"] < LAST_END for m in only_twin)
    assert client.request("POST", "/v1/patterns/search", body={"vector": [0.0] * DIMENSION}).body == {"data": []}


def test_graph_endpoints_are_the_graph_stores_answer(world: World) -> None:
    a = world.a
    client = world.client(a.key)
    neighbors = client.data("/v1/graph/neighbors", symbol="LEAD")  # default min_weight: the correlation threshold
    assert [(n["symbol"], n["timeframe"], n["via"], n["depth"]) for n in neighbors] == [("TWIN", "1m", "LEAD", 1)]
    assert neighbors[0]["weight"] > 0.99
    for depth in (1, 3):
        everything = client.data("/v1/graph/neighbors", symbol="LEAD", min_weight=0, depth=depth)
        direct = asyncio.run(direct_graph(world, "neighbors", a.tenant, "LEAD", depth=depth, min_weight=0.0))
        assert [(n["symbol"], n["depth"], n["via"], n["weight"]) for n in everything] == \
               [(n.symbol, n.depth, n.via, n.weight) for n in direct]
        assert {n["symbol"] for n in everything} == {"TWIN", "SOLO"}
    strategies = client.data("/v1/graph/strategies", symbol="LEAD")
    assert [(e["strategy"], e["signals"], e["last_action"]) for e in strategies] == [("breakout", 1, "buy"), ("meanrev", 2, "sell")]
    assert strategies[1]["mean_confidence"] == pytest.approx(0.6)
    assert strategies[1]["last_time_ms"] == T0 + 9 * MINUTE
    assert client.data("/v1/graph/neighbors", symbol="NOSUCH") == [] and client.data("/v1/graph/strategies", symbol="NOSUCH") == []


# --- one tenant never sees another's data ----------------------------------------------------------------


def leaks(value: Any, markers: set[Any]) -> list[Any]:
    """Every scalar inside ``value`` that is one of ``markers``."""
    if isinstance(value, dict):
        return [leak for v in value.values() for leak in leaks(v, markers)]
    if isinstance(value, list):
        return [leak for v in value for leak in leaks(v, markers)]
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, float) and not math.isfinite(value):
        return []
    return [value] if value in markers else []


def cross_tenant_requests(world: World) -> Iterator[tuple[str, str, dict[str, Any], Any]]:
    """(method, path, query, body) of every combination to try with tenant A's key."""
    far = T0 + 10 * 24 * 3600 * 1000
    for symbol in (*SYMBOLS, "TIES", "BONLY"):
        for broker in ("demo", "bbroker"):
            yield "GET", "/v1/ticks/latest", {"symbol": symbol, "broker": broker}, None
        for broker in (None, "demo", "bbroker"):
            for bounds in ({}, {"from": T0, "to": far}, {"cursor": f"{far}-0"}, {"from": T0 + 1007, "to": T0 + 1008}):
                yield "GET", "/v1/ticks", {"symbol": symbol, "broker": broker, "limit": 1000, **bounds}, None
                yield "GET", "/v1/candles", {"symbol": symbol, "broker": broker, "timeframe": "1m", "limit": 1000, **bounds}, None
                yield "GET", "/v1/indicators", {"symbol": symbol, "broker": broker, "timeframe": "1m", "limit": 1000,
                                                "names": "vwap,sma_20" if bounds else None, **bounds}, None
                yield "GET", "/v1/signals", {"symbol": symbol, "broker": broker, "limit": 1000, **bounds}, None
            yield "GET", "/v1/patterns/similar", {"symbol": symbol, "broker": broker, "timeframe": "1m", "k": 100}, None
        for depth in range(1, 6):
            for min_weight in (0, 0.5):
                yield "GET", "/v1/graph/neighbors", {"symbol": symbol, "depth": depth, "min_weight": min_weight}, None
        yield "GET", "/v1/graph/strategies", {"symbol": symbol}, None
    for strategy in ("bstrat", "meanrev", "breakout"):
        yield "GET", "/v1/signals", {"strategy": strategy, "limit": 1000}, None
        for symbol in (None, "LEAD", "BONLY"):
            yield "GET", "/v1/strategies/performance", {"strategy": strategy, "symbol": symbol, "horizon": "5m"}, None
    yield "GET", "/v1/strategies/performance", {}, None
    yield "GET", "/v1/signals", {"limit": 1000}, None
    for page in ({}, {"limit": 1}, {"limit": 1000}, {"cursor": "A:demo"}, {"cursor": "BONLY:bbroker"},
                 {"cursor": "LEAD:bbroker", "limit": 2}):
        yield "GET", "/v1/symbols", page, None
    for vector in world.extra["b_vectors"]:
        for filters in ({}, {"symbol": "BONLY"}, {"broker": "bbroker"}, {"symbol": "LEAD", "broker": "bbroker"},
                        {"timeframe": "1m", "before_ms": far}, {"with_forward_return_only": True}):
            yield "POST", "/v1/patterns/search", {}, {"vector": vector, "k": 100, **filters}


@pytest.fixture(scope="module")
def b_vectors(world: World) -> list[list[float]]:
    b = world.b
    vectors = [asyncio.run(stored_embedding(world, b.tenant, symbol, broker, LAST_END))
               for symbol, broker in (("BONLY", "bbroker"), ("LEAD", "bbroker"), ("LEAD", "demo"))]
    world.extra["b_vectors"] = vectors
    return vectors


def test_tenant_b_data_is_visible_to_b_so_the_markers_can_be_seen(world: World, b_vectors: list[list[float]]) -> None:
    b = world.b
    markers = b.markers() - world.a.markers()
    client = world.client(b.key)
    assert leaks(client.data("/v1/ticks", symbol="BONLY"), markers)
    assert leaks(client.data("/v1/signals", strategy="bstrat"), markers)
    found = client.request("POST", "/v1/patterns/search", body={"vector": b_vectors[0], "k": 5}).body["data"]
    assert ("BONLY", "bbroker") in {(m["symbol"], m["broker"]) for m in found}
    assert ("BONLY", "bbroker") in {(s["symbol"], s["broker"]) for s in client.data("/v1/symbols")}


def test_tenant_a_sees_nothing_of_tenant_b_whatever_the_parameters(world: World, b_vectors: list[list[float]]) -> None:
    a, b = world.a, world.b
    markers = b.markers() - a.markers() | {"BONLY", "bbroker", "bstrat", b.tenant}
    client = world.client(a.key)
    tried = 0
    for method, path, query, body in cross_tenant_requests(world):
        answer = client.request(method, path, query, body)
        assert answer.status == 200, (path, query, answer.body)
        assert not leaks(answer.body, markers), (path, query, leaks(answer.body, markers))
        if "BONLY" in (query.get("symbol"), (body or {}).get("symbol")) or "bbroker" in (query.get("broker"), (body or {}).get("broker")):
            assert answer.body["data"] == [], (path, query, body)
        tried += 1
    assert tried > 250

    # the tenant cannot be chosen by a parameter, a header, or a name crafted to reach another key
    refused = client.get("/v1/ticks", symbol="LEAD", tenant=b.tenant)
    assert refused.status == 400 and refused.body["parameter"] == "tenant"
    assert not leaks(client.request("GET", "/v1/ticks", {"symbol": "LEAD"}, headers={"X-Tenant": b.tenant}).body, markers)
    for crafted in (f"LEAD:{b.tenant}", f"../{b.tenant}", "LEAD*", "*"):
        assert client.get("/v1/ticks/latest", symbol="LEAD", broker=crafted).status == 400
        assert client.get("/v1/ticks", symbol=crafted).status == 400

    # an admin key manages its own tenant's keys only
    admin = world.client(a.admin_key)
    listed = admin.data("/v1/keys")
    assert b.admin_key_id not in {k["key_id"] for k in listed} and a.admin_key_id in {k["key_id"] for k in listed}
    assert admin.request("DELETE", f"/v1/keys/{b.admin_key_id}").status == 404
    assert world.client(b.admin_key).get("/v1/keys").status == 200, "B's key still works"


# --- errors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "params", "parameter"), [
    ("/v1/ticks", {"symbol": "LEAD", "limit": "0"}, "limit"),
    ("/v1/ticks", {"symbol": "LEAD", "limit": "1001"}, "limit"),
    ("/v1/ticks", {"symbol": "LEAD", "limit": "abc"}, "limit"),
    ("/v1/ticks", {"symbol": "LEAD", "limit": "1.5"}, "limit"),
    ("/v1/ticks", {"symbol": "LEAD", "limit": " 5"}, "limit"),
    ("/v1/ticks", {"symbol": "LEAD", "limit": "1_0"}, "limit"),
    ("/v1/ticks", {"symbol": "LEAD", "from": "-1"}, "from"),
    ("/v1/ticks", {"symbol": "LEAD", "to": "2025-01-01"}, "to"),
    ("/v1/ticks", {"symbol": "LEAD", "cursor": "bad"}, "cursor"),
    ("/v1/ticks", {"symbol": ""}, "symbol"),
    ("/v1/ticks", {"symbol": "a b"}, "symbol"),
    ("/v1/ticks", {"symbol": "LEAD\n"}, "symbol"),
    ("/v1/ticks", {}, "symbol"),
    ("/v1/ticks", {"symbol": "LEAD", "foo": "1"}, "foo"),
    ("/v1/ticks/latest", {"symbol": "LEAD"}, "broker"),
    ("/v1/candles", {"symbol": "LEAD", "timeframe": "2m"}, "timeframe"),
    ("/v1/indicators", {"symbol": "LEAD", "timeframe": "1m", "names": "sma_20,bogus"}, "names"),
    ("/v1/indicators", {"symbol": "LEAD", "timeframe": "1m", "names": "sma_20, vwap"}, "names"),
    ("/v1/indicators", {"symbol": "LEAD", "timeframe": "1m", "names": ""}, "names"),
    ("/v1/signals", {"strategy": "a b"}, "strategy"),
    ("/v1/strategies/performance", {"horizon": "2h"}, "horizon"),
    ("/v1/strategies/performance", {"symbol": "LEAD\n"}, "symbol"),
    ("/v1/patterns/similar", {"symbol": "LEAD", "timeframe": "1m", "k": "0"}, "k"),
    ("/v1/graph/neighbors", {"symbol": "LEAD", "depth": "6"}, "depth"),
    ("/v1/graph/neighbors", {"symbol": "LEAD", "min_weight": "1.5"}, "min_weight"),
    ("/v1/graph/neighbors", {"symbol": "LEAD", "min_weight": "nan"}, "min_weight"),
    ("/v1/graph/neighbors", {"symbol": "LEAD", "min_weight": "inf"}, "min_weight"),
])
def test_bad_parameters_are_a_400_naming_the_parameter(world: World, path: str, params: dict, parameter: str) -> None:
    answer = world.client(world.a.key).get(path, **params)
    assert answer.status == 400, answer.body
    assert answer.body["parameter"] == parameter and answer.body["error"].startswith(parameter)


def test_repeated_parameter_is_a_400(world: World) -> None:
    answer = world.client(world.a.key).request("GET", "/v1/ticks?symbol=LEAD&symbol=TWIN")
    assert answer.status == 400 and answer.body["parameter"] == "symbol"


@pytest.mark.parametrize(("body", "parameter"), [
    (b"{not json", "body"),
    (b"", "body"),
    (b"[]", "body"),
    (orjson.dumps({"vector": [1.0] * (DIMENSION - 1)}), "vector"),
    (orjson.dumps({"vector": ["x"] * DIMENSION}), "vector"),
    (b'{"vector": [' + b",".join([b"1e400"] * DIMENSION) + b"]}", "vector"),
    (orjson.dumps({"vector": [1.0] * DIMENSION, "k": 0}), "k"),
    (orjson.dumps({"vector": [1.0] * DIMENSION, "timeframe": "2m"}), "timeframe"),
    (orjson.dumps({"vector": [1.0] * DIMENSION, "symbol": None}), "symbol"),
    (orjson.dumps({"vector": [1.0] * DIMENSION, "tenant": "x"}), "tenant"),
])
def test_bad_search_bodies_are_a_400_naming_the_field(world: World, body: bytes, parameter: str) -> None:
    answer = world.client(world.a.key).request("POST", "/v1/patterns/search", raw_body=body)
    assert answer.status == 400, answer.body
    assert answer.body["parameter"] == parameter, answer.body
    assert "Traceback" not in answer.body["error"]


def test_unknown_names_give_empty_lists_everywhere(world: World) -> None:
    client = world.client(world.a.key)
    assert client.data("/v1/ticks/latest", symbol="NOSUCH", broker="demo") == []
    assert client.data("/v1/ticks", symbol="NOSUCH") == []
    assert client.data("/v1/candles", symbol="NOSUCH", timeframe="1m") == []
    assert client.data("/v1/indicators", symbol="NOSUCH", timeframe="1m") == []
    assert client.data("/v1/signals", symbol="NOSUCH") == []
    assert client.data("/v1/strategies/performance", symbol="NOSUCH") == []
    assert client.data("/v1/patterns/similar", symbol="NOSUCH", timeframe="1m") == []
    assert client.data("/v1/graph/neighbors", symbol="NOSUCH") == []
    assert client.data("/v1/graph/strategies", symbol="NOSUCH") == []


# --- operations -------------------------------------------------------------------------------------------


def test_metrics_serve_the_consume_path_and_api_latency_by_route_and_status(world: World) -> None:
    client = world.client(world.a.key)
    client.get("/v1/ticks", symbol="LEAD")
    client.get("/v1/ticks", symbol="LEAD", limit="abc")
    answer = ApiClient(world.settings.api_url).get("/metrics")
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/plain")
    text = answer.body
    assert 'tickwire_api_request_seconds_count{route="GET /v1/ticks",status="200"}' in text
    assert 'tickwire_api_request_seconds_count{route="GET /v1/ticks",status="400"}' in text
    def has(name: str, **labels: str) -> bool:
        """A sample of ``name`` with these labels (in any order) is exposed."""
        for line in ApiClient(world.settings.api_url).get("/metrics").body.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return True
        return False

    for name, labels in [("tickwire_records_consumed_total", {"stage": "ingest", "topic": "mt5.ticks.v1"}),
                         ("tickwire_sink_flush_seconds_bucket", {"stage": "ingest", "sink": "clickhouse.ticks"}),
                         ("tickwire_checkpoint_seconds_count", {"stage": "ingest"}),
                         ("tickwire_consumer_lag", {"stage": "ingest", "topic": "mt5.ticks.v1", "partition": "0"}),
                         ("tickwire_consumer_lag_seconds", {"stage": "patterns", "topic": "candles.v1"}),
                         ("tickwire_batch_records_bucket", {"stage": "ingest"})]:
        wait_until(lambda: has(name, **labels), timeout_s=20, what=f"{name} {labels}")
    assert world.a.tenant not in text and world.a.key not in text


def test_openapi_document_is_served_and_lists_every_route(world: World) -> None:
    answer = ApiClient(world.settings.api_url).get("/openapi.json")
    assert answer.status == 200
    assert answer.body == orjson.loads(document_bytes(world.settings))
    assert answer.body["openapi"].startswith("3.")
    assert set(answer.body["paths"]) == {
        "/health", "/health/live", "/health/ready", "/metrics", "/openapi.json", "/docs", "/v1/ticks/latest",
        "/v1/ticks", "/v1/candles", "/v1/indicators", "/v1/signals", "/v1/patterns/similar", "/v1/patterns/search",
        "/v1/graph/neighbors", "/v1/graph/strategies", "/v1/strategies/performance", "/v1/keys", "/v1/keys/{key_id}",
        "/v1/symbols", "/v1/ticks/stream", "/console", "/console/{name}"}
    neighbors = answer.body["paths"]["/v1/graph/neighbors"]["get"]
    min_weight = next(p for p in neighbors["parameters"] if p["name"] == "min_weight")
    assert min_weight["schema"]["default"] == world.settings.correlation_threshold
