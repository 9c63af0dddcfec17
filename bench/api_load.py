"""(4) API speed: latency percentiles and requests/s of the read endpoints under concurrent clients.

Runs against the worker of the last full-pipeline run (:mod:`bench.full_pipeline`),
idle by then, whose stores hold 1M ticks, their bars, patterns and graph
edges: realistic data behind every endpoint. A tenant key is issued as
``tickwire keys create`` does (``pipeline.api.keys.create_key``) and sent as
``Authorization: Bearer <key>``.

Method. Each endpoint is loaded on its own for ``api_s`` seconds by
``api_clients`` concurrent clients (aiohttp, keep-alive, one connection per
client), each sending its next request as soon as the previous answered,
rotating over the tenant's 50 symbols. The clients run in
:data:`CLIENT_PROCESSES` spawned process(es) of their own (uvloop; with
several, the clients are split evenly and all start together once every
process is warm), never in the bench's main process. A request's latency is
measured in its client, send to the last byte of the answer, so it includes
the client's own event loop (a response waits while the loop serves the other
clients), the network stack and parsing. One client process, because this box
has 2 cores: the worker's event loop takes one, and a second client process
only competes with it. Measured side by side on the same worker (3 rounds,
``/v1/ticks/latest``), one client process, two, and the bench's own loop
showed no consistent difference (medians 4,481, 4,463 and 4,622 req/s; on the
worker before the lean path 2,422, 2,950 and 3,283), so the client's queueing
is not what limits these figures: the worker's event loop, saturated, is. Any
answer other than 200 counts as an error.

Before the clock starts, the client process asks for each of the 50 pages
once (and opens its connections), so cached endpoints are measured warm: the
steady state of the idle worker, whose answers stay valid as it never
commits.

Then one client alone for a third of that time gives each endpoint's service
time without queueing (``single_client``): with 16 clients in flight,
p50 ≈ 16 / (requests/s) by Little's law.

Cached answers. The API keeps answers of ClickHouse reads until the worker's
next commit (:mod:`pipeline.api.answer_cache`); the idle worker never
commits, so every repeat of the 50 pages is a hit. A worker under ingest
commits every ``TICKWIRE_COMMIT_INTERVAL_MS`` and the hit ratio falls with it.
Each answer says which it was (``X-Cache: hit|miss``) and ``hit_ratio``
reports the share of hits. For every cached endpoint the same loads are
repeated with ``Cache-Control: no-cache`` (every answer computed, as on a
miss): ``uncached`` holds those figures, the service time of the query
itself.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
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
#: Processes the concurrent clients run in (none of them is the bench's main process); see the module docstring.
CLIENT_PROCESSES = 1
#: The longest a client process may take beyond its load time (start, warm-up, reporting) before the run fails.
CLIENT_TIMEOUT_S = 120.0

#: path -> parameters of its request for a symbol
ENDPOINTS: dict[str, dict[str, Any]] = {
    "/v1/ticks/latest": {"broker": BROKER},
    "/v1/ticks": {"limit": 100},
    "/v1/candles": {"timeframe": "1m", "limit": 100},
    "/v1/patterns/similar": {"timeframe": "1m"},
    "/v1/graph/neighbors": {},
}
#: Endpoints whose answers the API caches: also measured with ``Cache-Control: no-cache``.
CACHED = ("/v1/ticks", "/v1/candles")


async def issue_key(settings: Settings) -> str:
    pool = await open_pool(settings.postgres_connection_dsn, max_size=1)
    try:
        await add_tenant(pool, TENANT)
        return (await create_key(pool, TENANT, "read")).key
    finally:
        await pool.close()


@dataclass
class Samples:
    """What clients saw: latencies (ms), error statuses, and per 200 answer whether it had data and was a cache hit."""

    latencies: list[float] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)
    non_empty: int = 0
    ok: int = 0
    hits: int = 0

    def merge(self, other: Samples) -> None:
        self.latencies += other.latencies
        self.errors += other.errors
        self.non_empty += other.non_empty
        self.ok += other.ok
        self.hits += other.hits


async def _client(session: aiohttp.ClientSession, url: str, params: dict[str, Any], offset: int, until: float,
                  samples: Samples) -> None:
    i = offset
    while time.time() < until:
        query = {"symbol": SYMBOL_NAMES[i % len(SYMBOL_NAMES)], **params}
        i += 1
        started = time.perf_counter()
        async with session.get(url, params=query) as response:
            body = await response.read()
        samples.latencies.append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            samples.errors.append(response.status)
            continue
        samples.ok += 1
        samples.non_empty += b'"data":[]' not in body
        samples.hits += response.headers.get("X-Cache") == "hit"


async def _clients(url: str, headers: dict[str, str], params: dict[str, Any], offsets: list[int], seconds: float,
                   ready: Barrier) -> Samples:
    samples = Samples()
    connector = aiohttp.TCPConnector(limit=len(offsets))
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        async def warm(symbols: tuple[str, ...]) -> None:
            for symbol in symbols:
                async with session.get(url, params={"symbol": symbol, **params}) as response:
                    await response.read()

        await warm(SYMBOL_NAMES)  # every page once: cached endpoints are measured warm (see the module docstring)
        await asyncio.gather(*(warm(SYMBOL_NAMES[:1]) for _ in offsets))  # one open connection per client
        await asyncio.to_thread(ready.wait)  # every client process warm: all start together
        until = time.time() + seconds
        await asyncio.gather(*(_client(session, url, params, n, until, samples) for n in offsets))
    return samples


def _client_process(url: str, headers: dict[str, str], params: dict[str, Any], offsets: list[int], seconds: float,
                    ready: Barrier, results: Queue) -> None:
    """One client process: ``len(offsets)`` clients for ``seconds`` once every process is ready; puts its Samples."""
    import uvloop

    results.put(uvloop.run(_clients(url, headers, params, offsets, seconds, ready)))


def load_endpoint(settings: Settings, key: str, path: str, seconds: float, clients: int, *,
                  no_cache: bool = False, processes: int = CLIENT_PROCESSES) -> dict[str, Any]:
    """``clients`` concurrent clients on ``path`` for ``seconds``, in client processes: latency percentiles,
    requests/s, errors, share of answers with data and of cache hits."""
    headers = {"Authorization": f"Bearer {key}"}
    if no_cache:
        headers["Cache-Control"] = "no-cache"
    processes = min(processes, clients)
    context = multiprocessing.get_context("spawn")
    ready, results = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=_client_process, daemon=True,
                               args=(settings.api_url + path, headers, ENDPOINTS[path],
                                     list(range(p, clients, processes)), seconds, ready, results))
               for p in range(processes)]
    for worker in workers:
        worker.start()
    samples = Samples()
    try:
        for _ in workers:
            samples.merge(results.get(timeout=seconds + CLIENT_TIMEOUT_S))
    finally:
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.kill()
    summary = latency_summary(samples.latencies)
    return {"requests": len(samples.latencies), "rps": round(len(samples.latencies) / seconds, 1),
            "p50_ms": summary["p50_ms"], "p95_ms": summary["p95_ms"], "p99_ms": summary["p99_ms"],
            "max_ms": summary["max_ms"], "errors": len(samples.errors), "error_statuses": sorted(set(samples.errors)),
            "non_empty_share": round(samples.non_empty / samples.ok, 3) if samples.ok else 0.0,
            "hit_ratio": round(samples.hits / samples.ok, 3) if samples.ok else 0.0}


def _measure(settings: Settings, key: str, path: str, plan: Plan, *, no_cache: bool = False) -> dict[str, Any]:
    """The concurrent run, with the single-client run's figures under ``single_client``."""
    loaded = load_endpoint(settings, key, path, plan.api_s, plan.api_clients, no_cache=no_cache)
    alone = load_endpoint(settings, key, path, plan.api_s / SINGLE_CLIENT_SHARE, 1, no_cache=no_cache)
    loaded["single_client"] = {k: alone[k] for k in ("p50_ms", "p99_ms", "rps")}
    return loaded


def _line(label: str, e: dict[str, Any]) -> str:
    return (f"{label:22} p50 {e['p50_ms']:7.2f} ms  p99 {e['p99_ms']:7.2f} ms  {e['rps']:>8,.0f} req/s  "
            f"1 client p50 {e['single_client']['p50_ms']:6.2f} ms  hits {e['hit_ratio']:.0%}  errors {e['errors']}")


def run_api(settings: Settings, plan: Plan, reporter: Reporter) -> dict[str, Any]:
    key = asyncio.run(issue_key(settings))
    endpoints = {}
    for path in ENDPOINTS:
        with reporter.step(f"API {path}: {plan.api_clients} clients for {plan.api_s:g} s, then 1 client"
                           + (", then both without the cache" if path in CACHED else "")):
            endpoints[path] = _measure(settings, key, path, plan)
            if path in CACHED:
                endpoints[path]["uncached"] = _measure(settings, key, path, plan, no_cache=True)
        reporter.note(f"API {_line(path, endpoints[path])}")
        if path in CACHED:
            reporter.note(f"API {_line('  with no-cache', endpoints[path]['uncached'])}")
    return {"clients": plan.api_clients, "client_processes": min(CLIENT_PROCESSES, plan.api_clients),
            "seconds_per_endpoint": plan.api_s, "tenant": TENANT, "cached_endpoints": list(CACHED),
            "endpoints": endpoints}
