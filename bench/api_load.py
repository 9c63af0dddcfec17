"""(4) API speed: latency percentiles and requests/s of the read endpoints under concurrent clients.

Runs against the worker of the last full-pipeline run (:mod:`bench.full_pipeline`),
idle by then, whose stores hold 1M ticks, their bars, patterns and graph
edges: realistic data behind every endpoint. A tenant key is issued as
``tickwire keys create`` does (``pipeline.api.keys.create_key``) and sent as
``Authorization: Bearer <key>``.

Each endpoint is loaded on its own for ``api_s`` seconds by ``api_clients``
concurrent clients (aiohttp, keep-alive, one connection per client), each
sending its next request as soon as the previous answered, rotating over the
tenant's 50 symbols. A request's latency is measured in the client, send to
the last byte of the answer. Any answer other than 200 counts as an error.
The clients share the 2 cores with the worker, so requests/s is what this
box does with both on it. Then one client alone for a third of that time
gives each endpoint's service time without queueing (``single_client``): with
16 clients in flight, p50 ≈ 16 / (requests/s) by Little's law.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from bench.data import BROKER, SYMBOL_NAMES, TENANTS
from bench.plan import Plan
from bench.progress import Reporter
from bench.stats import latency_summary
from pipeline.api.keys import create_key
from pipeline.api.migrations import open_pool
from pipeline.api.tenants import add_tenant
from pipeline.config import Settings

TENANT = TENANTS[0]
#: The single-client run (service time without queueing) lasts api_s / this.
SINGLE_CLIENT_SHARE = 3

#: path -> parameters of its request for a symbol
ENDPOINTS: dict[str, dict[str, Any]] = {
    "/v1/ticks/latest": {"broker": BROKER},
    "/v1/ticks": {"limit": 100},
    "/v1/candles": {"timeframe": "1m", "limit": 100},
    "/v1/patterns/similar": {"timeframe": "1m"},
    "/v1/graph/neighbors": {},
}


async def issue_key(settings: Settings) -> str:
    pool = await open_pool(settings.postgres_dsn, max_size=1)
    try:
        await add_tenant(pool, TENANT)
        return (await create_key(pool, TENANT, "read")).key
    finally:
        await pool.close()


async def _client(session: aiohttp.ClientSession, url: str, params: dict[str, Any], offset: int, until: float,
                  latencies: list[float], errors: list[int], non_empty: list[bool]) -> None:
    i = offset
    while time.monotonic() < until:
        query = {"symbol": SYMBOL_NAMES[i % len(SYMBOL_NAMES)], **params}
        i += 1
        started = time.perf_counter()
        async with session.get(url, params=query) as response:
            body = await response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            errors.append(response.status)
        else:
            non_empty.append(b'"data":[]' not in body)


async def load_endpoint(settings: Settings, key: str, path: str, seconds: float, clients: int) -> dict[str, Any]:
    """``clients`` concurrent clients on ``path`` for ``seconds``: latency percentiles, requests/s, errors."""
    latencies: list[float] = []
    errors: list[int] = []
    non_empty: list[bool] = []
    connector = aiohttp.TCPConnector(limit=clients)
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        url = settings.api_url + path
        async with session.get(url, params={"symbol": SYMBOL_NAMES[0], **ENDPOINTS[path]}) as warm:
            await warm.read()
        started = time.monotonic()
        until = started + seconds
        await asyncio.gather(*(_client(session, url, ENDPOINTS[path], n, until, latencies, errors, non_empty)
                               for n in range(clients)))
        elapsed = time.monotonic() - started
    summary = latency_summary(latencies)
    return {"requests": len(latencies), "rps": round(len(latencies) / elapsed, 1), "p50_ms": summary["p50_ms"],
            "p95_ms": summary["p95_ms"], "p99_ms": summary["p99_ms"], "max_ms": summary["max_ms"],
            "errors": len(errors), "error_statuses": sorted(set(errors)),
            "non_empty_share": round(sum(non_empty) / len(non_empty), 3) if non_empty else 0.0}


def run_api(settings: Settings, plan: Plan, reporter: Reporter) -> dict[str, Any]:
    key = asyncio.run(issue_key(settings))
    endpoints = {}
    for path in ENDPOINTS:
        with reporter.step(f"API {path}: {plan.api_clients} clients for {plan.api_s:g} s, then 1 client"):
            endpoints[path] = asyncio.run(load_endpoint(settings, key, path, plan.api_s, plan.api_clients))
            alone = asyncio.run(load_endpoint(settings, key, path, plan.api_s / SINGLE_CLIENT_SHARE, 1))
        endpoints[path]["single_client"] = {k: alone[k] for k in ("p50_ms", "p99_ms", "rps")}
        e = endpoints[path]
        reporter.note(f"API {path:22} p50 {e['p50_ms']:7.2f} ms  p99 {e['p99_ms']:7.2f} ms  {e['rps']:>8,.0f} req/s  "
                      f"errors {e['errors']}")
    return {"clients": plan.api_clients, "seconds_per_endpoint": plan.api_s, "tenant": TENANT, "endpoints": endpoints}
