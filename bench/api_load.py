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

Reads beside ingestion (``under_ingest``). Then a producer sends live ticks
(wall-clock times, one tenant of its own, the 50 symbols in rotation, with
tickwire's producer settings) at the plan's steady rate (``latency_rate``:
10k ticks/s in the full run) to the same worker, and windows of ``api_s``
seconds alternate: no reads, 16 clients on ``/v1/ticks`` with
``Cache-Control: no-cache``, no reads, the same on ``/v1/candles``, no reads,
``/v1/patterns/similar``, no reads (so the broker slowing down as its
partitions fill hits both kinds of window alike). Meanwhile the committed
offsets of the ingest stage are read every :data:`COMMIT_POLL_S`: per window,
the ingest rate (records committed per second), the produce → committed
latency of every tick sent in it (a commit comes after every sink's flush:
the tick is in ClickHouse and its hot key written) and the lag (records sent
and acknowledged but not committed, at each poll). ``ingest_ratio`` compares
the read windows together with the windows without reads (rate: with ÷
without, 1.0 = unchanged; latency and lag: with ÷ without, 1.0 = unchanged).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import threading
import time
from bisect import bisect_right
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.data import BROKER, SYMBOL_NAMES, TENANTS
from bench.plan import Plan
from bench.progress import Reporter
from bench.stats import latency_summary
from pipeline.api.keys import create_key
from pipeline.api.migrations import open_pool
from pipeline.api.tenants import add_tenant
from pipeline.config import Settings
from pipeline.contracts.topics import TICKS_TOPIC
from pipeline.core.kafka import client_options, make_producer
from pipeline.ingest.simulator import spec_of
from pipeline.runtime.source import stage_group

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
#: Endpoints read (all with ``Cache-Control: no-cache``) while ticks are produced at a steady rate.
UNDER_INGEST = ("/v1/ticks", "/v1/candles", "/v1/patterns/similar")
#: The tenant of the ticks produced beside the reads (not the one read).
INGEST_TENANT = "bench-api-live"
#: How often the ingest stage's committed offsets are read while ticks are produced beside the reads.
COMMIT_POLL_S = 0.1
#: Produce slices: every slice sends what is due since the start.
SLICE_S = 0.005


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
    #: when the timed load began and ended (epoch s)
    began: float = float("inf")
    ended: float = 0.0
    #: CPU seconds the serving process (the worker) spent from began to ended
    worker_cpu_s: float = 0.0

    def merge(self, other: Samples) -> None:
        self.latencies += other.latencies
        self.errors += other.errors
        self.non_empty += other.non_empty
        self.ok += other.ok
        self.hits += other.hits
        self.began = min(self.began, other.began)
        self.ended = max(self.ended, other.ended)
        self.worker_cpu_s = max(self.worker_cpu_s, other.worker_cpu_s)  # each process measured the same worker


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


def _cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def serving_pid(settings: Settings) -> int:
    """The process listening on the API's port (the worker)."""
    port = urlsplit(settings.api_url).port
    for connection in psutil.net_connections("tcp"):
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port and connection.pid is not None:
            return connection.pid
    raise RuntimeError(f"no process listens at {settings.api_url}")


async def _clients(url: str, headers: dict[str, str], params: dict[str, Any], offsets: list[int], seconds: float,
                   ready: Barrier, worker_pid: int) -> Samples:
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
        cpu = _cpu_s(worker_pid)
        samples.began = time.time()
        until = samples.began + seconds
        await asyncio.gather(*(_client(session, url, params, n, until, samples) for n in offsets))
        samples.ended = time.time()
        samples.worker_cpu_s = _cpu_s(worker_pid) - cpu
    return samples


def _client_process(url: str, headers: dict[str, str], params: dict[str, Any], offsets: list[int], seconds: float,
                    ready: Barrier, worker_pid: int, results: Queue) -> None:
    """One client process: ``len(offsets)`` clients for ``seconds`` once every process is ready; puts its Samples."""
    import uvloop

    results.put(uvloop.run(_clients(url, headers, params, offsets, seconds, ready, worker_pid)))


def load_endpoint(settings: Settings, key: str, path: str, seconds: float, clients: int, *,
                  no_cache: bool = False, processes: int = CLIENT_PROCESSES) -> dict[str, Any]:
    """``clients`` concurrent clients on ``path`` for ``seconds``, in client processes: latency percentiles,
    requests/s, errors, share of answers with data and of cache hits, and the worker's CPU time per request
    (all it did in that time, over the requests: on a shared box steadier than the latencies)."""
    headers = {"Authorization": f"Bearer {key}"}
    if no_cache:
        headers["Cache-Control"] = "no-cache"
    processes = min(processes, clients)
    context = multiprocessing.get_context("spawn")
    ready, results = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=_client_process, daemon=True,
                               args=(settings.api_url + path, headers, ENDPOINTS[path],
                                     list(range(p, clients, processes)), seconds, ready, serving_pid(settings),
                                     results))
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
            "hit_ratio": round(samples.hits / samples.ok, 3) if samples.ok else 0.0,
            "worker_cpu_ms_per_request": round(samples.worker_cpu_s * 1000 / len(samples.latencies), 3)
            if samples.latencies else None,
            "window": [samples.began, samples.ended]}


def _measure(settings: Settings, key: str, path: str, plan: Plan, *, no_cache: bool = False) -> dict[str, Any]:
    """The concurrent run, with the single-client run's figures under ``single_client``."""
    loaded = load_endpoint(settings, key, path, plan.api_s, plan.api_clients, no_cache=no_cache)
    alone = load_endpoint(settings, key, path, plan.api_s / SINGLE_CLIENT_SHARE, 1, no_cache=no_cache)
    del loaded["window"]
    loaded["single_client"] = {k: alone[k] for k in ("p50_ms", "p99_ms", "rps")}
    return loaded


class IngestBeside:
    """Ticks produced at a steady rate to the worker, and the ingest stage's committed offsets polled, each in a
    thread of its own (see the module docstring): start it, run the windows, :meth:`stop` it, then ask
    :meth:`window`."""

    def __init__(self, settings: Settings, rate: int) -> None:
        self.settings = settings
        self.rate = rate
        self.sent: dict[int, list[tuple[int, float]]] = {}  # partition -> (offset, send time), acknowledged
        self.polls: list[tuple[float, dict[int, int]]] = []  # (time, committed offset per partition)
        self.failed_polls = 0
        self.produced = 0
        self._stop = threading.Event()
        self._failures: list[BaseException] = []
        # one event loop each: a producer that is behind never delays a poll
        self._threads = [threading.Thread(target=self._run, args=(main,), name=f"ingest-beside-{main.__name__}",
                                          daemon=True) for main in (self._producing, self._polling)]
        self._started = threading.Barrier(len(self._threads) + 1)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()
        try:
            self._started.wait(timeout=60)
        except threading.BrokenBarrierError:
            raise RuntimeError(f"the producer beside the reads did not start: {self._failures!r}") from None

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        if self._failures:
            raise RuntimeError(f"the producer beside the reads failed: {self._failures!r}") from self._failures[0]

    def _run(self, main: Callable[[], Awaitable[None]]) -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported by start/stop in the bench's thread
            self._failures.append(exc)
            self._started.abort()

    async def _producing(self) -> None:
        producer = make_producer(self.settings)
        await producer.start()
        try:
            self._started.wait(timeout=60)
            await self._produce(producer)
        finally:
            await producer.stop()

    async def _polling(self) -> None:
        watcher = AIOKafkaConsumer(**client_options(self.settings), group_id=stage_group(self.settings, "ingest"),
                                   enable_auto_commit=False)
        await watcher.start()
        try:
            await watcher.topics()  # the cluster's metadata
            partitions = [TopicPartition(TICKS_TOPIC, p) for p in sorted(watcher.partitions_for_topic(TICKS_TOPIC) or ())]
            if not partitions:
                raise RuntimeError(f"no partitions of {TICKS_TOPIC}")
            self._started.wait(timeout=60)
            await self._poll(watcher, partitions)
        finally:
            await watcher.stop()

    async def _produce(self, producer: Any) -> None:
        rng = random.Random(5)
        specs = [spec_of(symbol) for symbol in SYMBOL_NAMES]
        keys = [f"{INGEST_TENANT}:{BROKER}:{symbol}".encode() for symbol in SYMBOL_NAMES]
        started = time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - started) * self.rate)
            while self.produced < due:
                k = self.produced % len(keys)
                spec = specs[k]
                mid = spec.price * (1 + rng.gauss(0, 1e-4))
                sent_at = time.time()
                value = orjson.dumps({
                    "v": 1, "tenant": INGEST_TENANT, "broker": BROKER, "symbol": SYMBOL_NAMES[k],
                    "time_msc": int(sent_at * 1000), "bid": round(mid - spec.spread / 2, spec.digits),
                    "ask": round(mid + spec.spread / 2, spec.digits), "last": 0.0, "volume": self.produced,
                    "volume_real": 0.0, "flags": 6})
                future = await producer.send(TICKS_TOPIC, value, key=keys[k])
                future.add_done_callback(lambda f, sent_at=sent_at: self._acknowledged(f, sent_at))
                self.produced += 1
                if self.produced % 1000 == 0:
                    await asyncio.sleep(0)  # behind: let the producer's sender run meanwhile
            await asyncio.sleep(SLICE_S)
        await producer.flush()

    def _acknowledged(self, future: asyncio.Future[Any], sent_at: float) -> None:
        if not future.cancelled() and future.exception() is None:
            metadata = future.result()
            self.sent.setdefault(metadata.partition, []).append((metadata.offset, sent_at))

    async def _poll(self, watcher: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
        while not self._stop.is_set():
            try:
                committed = {tp.partition: await watcher.committed(tp) or 0 for tp in partitions}
            except Exception:  # noqa: BLE001 - a poll the broker did not answer is missed, not fatal
                self.failed_polls += 1
            else:
                self.polls.append((time.time(), committed))
            await asyncio.sleep(COMMIT_POLL_S)

    def window(self, windows: list[tuple[float, float]]) -> dict[str, Any]:
        """Ingestion over ``windows`` (epoch s, together): the rate committed, the produce → committed latency of
        the ticks sent in them, and the lag in records (sent and acknowledged, not committed) at each poll."""
        times = [at for at, _ in self.polls]
        sent = {p: sorted(items) for p, items in self.sent.items()}
        sent_times = {p: [at for _, at in items] for p, items in sent.items()}
        committed = 0
        seconds = 0.0
        lags: list[int] = []
        latencies: list[float] = []
        for began, ended in windows:
            first, last = bisect_right(times, began), bisect_right(times, ended) - 1
            if last <= first:
                continue
            committed += sum(self.polls[last][1].values()) - sum(self.polls[first][1].values())
            seconds += times[last] - times[first]
            for at, offsets in self.polls[first:last + 1]:
                lag = 0
                for p, items in sent.items():
                    newest = bisect_right(sent_times[p], at) - 1
                    if newest >= 0:
                        lag += max(0, items[newest][0] + 1 - offsets.get(p, 0))
                lags.append(lag)
            for p, items in sent.items():
                poll = 0
                for offset, sent_at in items[bisect_right(sent_times[p], began):bisect_right(sent_times[p], ended)]:
                    while poll < len(self.polls) and (times[poll] < sent_at or self.polls[poll][1].get(p, 0) <= offset):
                        poll += 1
                    if poll < len(self.polls):
                        latencies.append((times[poll] - sent_at) * 1000)
        return {"seconds": round(seconds, 2), "rate": round(committed / seconds, 1) if seconds else 0.0,
                "commit_latency": latency_summary(latencies) if latencies else None,
                "lag_records": {"mean": round(sum(lags) / len(lags), 1), "max": max(lags)} if lags else None}


def _ratio(with_reads: float | None, without: float | None) -> float | None:
    return round(with_reads / without, 3) if with_reads is not None and without else None


def run_under_ingest(settings: Settings, key: str, plan: Plan, reporter: Reporter) -> dict[str, Any]:
    """The ``under_ingest`` figures (see the module docstring): reads and ingestion in alternating windows."""
    ingest = IngestBeside(settings, plan.latency_rate)
    endpoints: dict[str, dict[str, Any]] = {}
    quiet: list[tuple[float, float]] = []

    def pause() -> None:
        began = time.time()
        time.sleep(plan.api_s)
        quiet.append((began, time.time()))

    ingest.start()
    try:
        pause()
        for path in UNDER_INGEST:
            with reporter.step(f"API {path} with no-cache: {plan.api_clients} clients for {plan.api_s:g} s beside "
                               f"{plan.latency_rate:,} ticks/s, then {plan.api_s:g} s of ticks alone"):
                endpoints[path] = load_endpoint(settings, key, path, plan.api_s, plan.api_clients, no_cache=True)
                pause()
    finally:
        ingest.stop()
    reads = {path: tuple(figures.pop("window")) for path, figures in endpoints.items()}
    for path, figures in endpoints.items():
        figures["ingest"] = ingest.window([reads[path]])
    without, with_reads = ingest.window(quiet), ingest.window(list(reads.values()))
    latency = {"without": (without["commit_latency"] or {}).get("p99_ms"),
               "with": (with_reads["commit_latency"] or {}).get("p99_ms")}
    lag = {"without": (without["lag_records"] or {}).get("mean"), "with": (with_reads["lag_records"] or {}).get("mean")}
    return {"rate": plan.latency_rate, "ticks_sent": ingest.produced, "tenant": INGEST_TENANT,
            "commit_polls": len(ingest.polls), "failed_commit_polls": ingest.failed_polls,
            "clients": plan.api_clients, "seconds_per_window": plan.api_s, "endpoints": endpoints,
            "ingest_without_reads": without, "ingest_with_reads": with_reads,
            "ingest_ratio": {"rate": _ratio(with_reads["rate"], without["rate"]),
                             "commit_p99": _ratio(latency["with"], latency["without"]),
                             "lag_records_mean": _ratio(lag["with"], lag["without"])}}


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
    under_ingest = run_under_ingest(settings, key, plan, reporter)
    for path, figures in under_ingest["endpoints"].items():
        reporter.note(f"API {path} no-cache beside {plan.latency_rate:,} ticks/s: p50 {figures['p50_ms']:.2f} ms  "
                      f"p99 {figures['p99_ms']:.2f} ms  {figures['rps']:,.0f} req/s  errors {figures['errors']}")
    ratio = under_ingest["ingest_ratio"]
    reporter.note(f"API ingest with reads / without: rate {ratio['rate']}, commit p99 {ratio['commit_p99']}, "
                  f"lag {ratio['lag_records_mean']}")
    return {"clients": plan.api_clients, "client_processes": min(CLIENT_PROCESSES, plan.api_clients),
            "seconds_per_endpoint": plan.api_s, "tenant": TENANT, "cached_endpoints": list(CACHED),
            "endpoints": endpoints, "under_ingest": under_ingest}
