"""Support for the API tests: an HTTP client, API keys, and a worker holding two tenants' data.

The two tenants' data are built so that anything of one is recognisable in an
answer to the other: tenant B's prices are three times A's (same shapes, so
the same pattern embeddings), its tick times are shifted by 7 ms, and it has a
symbol, a broker, a strategy and signal ids that A does not have.
"""

from __future__ import annotations

import asyncio
import math
import random
import socket
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.api.keys import IssuedKey, create_key
from pipeline.api.migrations import open_pool
from pipeline.api.tenants import add_tenant
from pipeline.config import Settings, load_settings
from pipeline.devstack.worker_process import WorkerProcess
from pipeline.ingest.producer import MT5Producer
from tests.waiting import wait_until

T0 = 1_763_899_200_000
MINUTE = 60_000
BARS = 45
SYMBOLS = ("LEAD", "TWIN", "SOLO")
#: Worker settings under which 45 one-minute bars give patterns, forward returns and correlation edges.
DERIVED_SETTINGS: dict[str, object] = dict(candle_timeframes="1m", correlation_window_bars=30,
                                           correlation_min_samples=10, pattern_horizon_bars=3)


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


class ApiClient:
    """A minimal blocking HTTP client for the API (JSON in and out; text for non-JSON answers)."""

    def __init__(self, base_url: str, key: str | None = None) -> None:
        self.base_url = base_url
        self.key = key

    def with_key(self, key: str | None) -> ApiClient:
        return ApiClient(self.base_url, key)

    def request(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None,
                headers: dict[str, str] | None = None, raw_body: bytes | None = None) -> Answer:
        query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v is not None})
        url = self.base_url + path + (f"?{query}" if query else "")
        sent = dict(headers or {})
        if self.key is not None:
            sent.setdefault("Authorization", f"Bearer {self.key}")
        data = raw_body if raw_body is not None else (orjson.dumps(body) if body is not None else None)
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        request = urllib.request.Request(url, data=data, headers=sent, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, payload, got = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            status, payload, got = exc.code, exc.read(), dict(exc.headers)
        if got.get("Content-Type", "").startswith("application/json"):
            return Answer(status, orjson.loads(payload), got)
        return Answer(status, payload.decode(errors="replace"), got)

    def get(self, path: str, **params: Any) -> Answer:
        return self.request("GET", path, params)

    def data(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """``data`` of a successful GET (fails the test otherwise)."""
        answer = self.get(path, **params)
        assert answer.status == 200, (path, params, answer.status, answer.body)
        return answer.body["data"]

    def pages(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every row of a paged list, following ``next_cursor`` to the end."""
        rows: list[dict[str, Any]] = []
        cursor = None
        for _ in range(10_000):
            answer = self.get(path, **params, cursor=cursor)
            assert answer.status == 200, (path, params, answer.body)
            rows += answer.body["data"]
            cursor = answer.body["next_cursor"]
            if cursor is None:
                return rows
        raise AssertionError("pagination did not end")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def issue_key(settings: Settings, tenant: str, scope: str = "read") -> IssuedKey:
    """Register ``tenant`` (if needed) and create a key for it, as ``tickwire keys create`` does."""

    async def run() -> IssuedKey:
        pool = await open_pool(settings.postgres_connection_dsn, max_size=1)
        try:
            await add_tenant(pool, tenant)
            return await create_key(pool, tenant, scope)
        finally:
            await pool.close()

    return asyncio.run(run())


def start_api_worker(stack_settings: Settings, directory: Path, **overrides: object) -> WorkerProcess:
    """A worker with its own group, chDB directory and API port, once its API is ready (``/health`` 200)."""
    group = "api-" + uuid.uuid4().hex[:8]
    settings = load_settings(**{**stack_settings.model_dump(), "group_id": group, "app_id": group + "-app",
                                "clickhouse_dsn": f"chdb://{directory / 'clickhouse'}", "state_dir": directory / "state",
                                "api_port": free_port(), **overrides})
    worker = WorkerProcess(settings, directory / "worker.log").start()
    worker.wait_ready()
    client = ApiClient(settings.api_url)
    wait_until(lambda: client.get("/health").status == 200, timeout_s=60, what="the API to be healthy")
    return worker


def closes(seed: int) -> dict[str, list[float]]:
    """Minute closes: LEAD random, TWIN the same returns at another level, SOLO independent."""
    rng = random.Random(seed)
    lead = [rng.gauss(0, 1e-3) for _ in range(BARS)]
    solo = [rng.gauss(0, 1e-3) for _ in range(BARS)]

    def walk(start: float, returns: list[float]) -> list[float]:
        prices = [start]
        for r in returns:
            prices.append(prices[-1] * math.exp(r))
        return prices[1:]

    return {"LEAD": walk(1.1, lead), "TWIN": walk(150.0, lead), "SOLO": walk(50.0, solo)}


def series_ticks(tenant: str, broker: str, symbol: str, series: list[float], shift_ms: int = 0) -> list[dict[str, Any]]:
    """Two ticks per minute (the second carries the close), then one in the next minute that closes the last bar."""
    ticks = []
    for minute, close in enumerate(series):
        for offset, price in ((1_000, close * 0.9999), (59_000, close)):
            ticks.append(dict(tenant=tenant, broker=broker, symbol=symbol, time_msc=T0 + minute * MINUTE + offset + shift_ms,
                              bid=round(price, 6), ask=round(price * 1.00002, 6), flags=6))
    ticks.append(dict(tenant=tenant, broker=broker, symbol=symbol, time_msc=T0 + BARS * MINUTE + 500 + shift_ms,
                      bid=round(series[-1], 6), ask=round(series[-1] * 1.00002, 6), flags=6))
    return ticks


@dataclass
class TenantData:
    """What the test produced for one tenant (``bars``: closed 1m bars expected per symbol), and its keys."""

    tenant: str
    ticks: list[dict[str, Any]]
    signals: list[dict[str, Any]]
    bars: dict[str, int]
    key: str = ""
    admin_key: str = ""
    admin_key_id: str = ""

    def ticks_of(self, symbol: str, broker: str | None = None) -> list[dict[str, Any]]:
        return [t for t in self.ticks if t["symbol"] == symbol and broker in (None, t["broker"])]

    def markers(self) -> set[Any]:
        """Values that only this tenant's data has: names, signal ids, tick times and prices (and mids)."""
        found: set[Any] = {self.tenant}
        for t in self.ticks:
            found |= {t["time_msc"], t["bid"], t["ask"], (t["bid"] + t["ask"]) / 2}
        for s in self.signals:
            found |= {s["id"], s["price"]}
        return found


def tenant_a(tenant: str) -> TenantData:
    """Three symbols of 45 one-minute bars (TWIN shaped like LEAD), signals, and TIES: 12 ticks in one millisecond."""
    ticks = [t for symbol, series in closes(3).items() for t in series_ticks(tenant, "demo", symbol, series)]
    ticks += [dict(tenant=tenant, broker="demo", symbol="TIES", time_msc=T0 + 123, bid=round(1.0 + i * 0.001, 6),
                   ask=round(1.0002 + i * 0.001, 6), flags=6) for i in range(12)]
    signals = [
        dict(id="a-sig-1", tenant=tenant, broker="demo", strategy="meanrev", symbol="LEAD", time_msc=T0 + 5 * MINUTE,
             action="buy", confidence=0.8, price=1.1001, sl=1.09, tp=1.12, reason="test"),
        dict(id="a-sig-2", tenant=tenant, broker="demo", strategy="meanrev", symbol="LEAD", time_msc=T0 + 9 * MINUTE,
             action="sell", confidence=0.4, price=1.1002),
        dict(id="a-sig-3", tenant=tenant, broker="demo", strategy="breakout", symbol="LEAD", time_msc=T0 + 7 * MINUTE,
             action="buy", confidence=0.6, price=1.1003),
        dict(id="a-sig-4", tenant=tenant, broker="demo", strategy="breakout", symbol="TWIN", time_msc=T0 + 8 * MINUTE,
             action="hold", confidence=0.5, price=150.01),
    ]
    return TenantData(tenant, ticks, signals, {symbol: BARS for symbol in SYMBOLS})


def tenant_b(tenant: str) -> TenantData:
    """Tenant A's shapes at three times the price, 7 ms later, plus what A has nothing of."""
    ticks = [t for symbol, series in closes(3).items()
             for t in series_ticks(tenant, "demo", symbol, [3 * p for p in series], shift_ms=7)]
    ticks += series_ticks(tenant, "bbroker", "BONLY", [3 * p for p in closes(11)["SOLO"]], shift_ms=7)
    ticks += series_ticks(tenant, "bbroker", "LEAD", [3.5 * p for p in closes(3)["LEAD"]], shift_ms=7)
    signals = [
        dict(id="b-sig-1", tenant=tenant, broker="demo", strategy="bstrat", symbol="LEAD", time_msc=T0 + 6 * MINUTE + 7,
             action="buy", confidence=0.9, price=3.3001),
        dict(id="b-sig-2", tenant=tenant, broker="bbroker", strategy="bstrat", symbol="BONLY", time_msc=T0 + 6 * MINUTE + 7,
             action="sell", confidence=0.3, price=150.007),
        dict(id="b-sig-3", tenant=tenant, broker="demo", strategy="meanrev", symbol="LEAD", time_msc=T0 + 5 * MINUTE + 7,
             action="buy", confidence=0.7, price=3.3007),
    ]
    return TenantData(tenant, ticks, signals, {"LEAD": 2 * BARS, "TWIN": BARS, "SOLO": BARS, "BONLY": BARS})


async def produce_ticks(settings: Settings, ticks: list[dict[str, Any]]) -> None:
    async with MT5Producer(settings) as producer:
        for tick in ticks:
            await producer.send_tick(**tick)


async def produce(settings: Settings, *datasets: TenantData) -> None:
    async with MT5Producer(settings) as producer:
        for data in datasets:
            for tick in data.ticks:
                await producer.send_tick(**tick)
            for sig in data.signals:
                await producer.send_signal(**sig)


@dataclass
class World:
    """A worker whose API serves two tenants' data, all of it stored and derived."""

    worker: WorkerProcess
    a: TenantData
    b: TenantData
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return self.worker.settings

    def client(self, key: str | None = None) -> ApiClient:
        return ApiClient(self.settings.api_url, key)


def _wait_stored(world: World, data: TenantData) -> None:
    client = world.client(data.key)
    for symbol in {t["symbol"] for t in data.ticks}:
        expected = len(data.ticks_of(symbol))
        wait_until(lambda: len(client.data("/v1/ticks", symbol=symbol, limit=1000)) == expected, timeout_s=90,
                   what=f"{data.tenant} {symbol}'s ticks")
    for symbol, bars in data.bars.items():
        wait_until(lambda: len(client.data("/v1/candles", symbol=symbol, timeframe="1m", limit=1000)) == bars,
                   timeout_s=90, what=f"{data.tenant} {symbol}'s bars")
    wait_until(lambda: len(client.data("/v1/signals", limit=1000)) == len(data.signals), timeout_s=60,
               what=f"{data.tenant}'s signals")
    wait_until(lambda: client.data("/v1/patterns/similar", symbol="LEAD", timeframe="1m", broker="demo"), timeout_s=60,
               what=f"{data.tenant}'s patterns with forward returns")
    wait_until(lambda: client.data("/v1/graph/neighbors", symbol="LEAD"), timeout_s=60, what=f"{data.tenant}'s edges")
    strategies = {s["strategy"] for s in data.signals if s["symbol"] == "LEAD"}
    wait_until(lambda: {e["strategy"] for e in client.data("/v1/graph/strategies", symbol="LEAD")} == strategies,
               timeout_s=60, what=f"{data.tenant}'s strategy edges")


def api_world(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A worker (with the API) holding tenant A's and tenant B's data, stored and derived; stopped at the end.

    For a module-scoped fixture: ``yield from api_world(stack_settings, tmp_path_factory)``.
    """
    worker = start_api_worker(stack_settings, tmp_path_factory.mktemp("api-worker"), **DERIVED_SETTINGS)
    suffix = uuid.uuid4().hex[:8]
    world = World(worker, tenant_a("ta" + suffix), tenant_b("tb" + suffix))
    try:
        for data in (world.a, world.b):
            data.key = issue_key(stack_settings, data.tenant, "read").key
            admin = issue_key(stack_settings, data.tenant, "admin")
            data.admin_key, data.admin_key_id = admin.key, admin.key_id
        asyncio.run(produce(stack_settings, world.a, world.b))
        for data in (world.a, world.b):
            _wait_stored(world, data)
        yield world
    finally:
        worker.stop()
