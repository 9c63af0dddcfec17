"""(3) Latency at a steady rate: produce → hot key visible, produce → row visible in ClickHouse.

A worker with default settings runs on empty topics. The bench produces live
ticks (wall-clock times, so 1m bars close during the run and derived streams
do their work) of one tenant's 50 symbols at ``rate`` ticks/s for ``seconds``
with tickwire's producer settings (``pipeline.stores.connections.make_producer``:
acks=all, linger 5 ms), after a short warm-up that is not measured. Each tick
carries its send time in µs in its ``volume`` field (``time_msc`` is the same
time in ms); the send time is taken just before ``send()``.

A prober in a process of its own (:mod:`bench.visibility_probe`, so that
the moment a change is seen is not delayed by this process's busy producer)
reads what a client would:

- hot keys: every 5 ms one pipelined ``HGET volume`` of all 50 hot keys. A
  key showing send time v makes every tick of that key sent at or before v
  visible (the hot key holds the newest tick and never goes back); each such
  tick's latency is the probe's answer time minus its send time.
- ClickHouse: every 100 ms the highest stored source offset per partition,
  asked through the worker's ``/internal/sql`` route
  (``pipeline.ops.sql_client.worker_query``). A checkpoint inserts a contiguous
  range of each partition, so every tick at or below that offset is visible;
  the producer learns each tick's partition and offset from its delivery.

Latencies are therefore upper bounds with the probe period as resolution
(5 ms and 100 ms). Every tick sent is accounted for; ticks not seen within
``DRAIN_S`` after the run are reported as ``unseen``.

Beside the worker, a bare aiokafka consumer (:mod:`bench.consume_floor`, own
group, the worker's consumer settings) reads the same ticks: its produce →
consumed latency is the floor the broker sets for any consumer here. The
worker's checkpoint statistics (:mod:`bench.worker_metrics`) are reported
too: the consume loop does not fetch while a checkpoint runs.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio

from bench.contender import python_module
from bench.data import BROKER, SYMBOL_NAMES
from bench.plan import Plan
from bench.profile import Profiler
from bench.progress import Reporter
from bench.stack import BenchStack
from bench.stats import latency_summary
from bench.visibility_probe import CH_PROBE_MS, HOT_PROBE_MS, stored_offsets_sql
from bench.worker_metrics import checkpoint_stats
from pipeline.config import Settings
from pipeline.contracts.cache_keys import hot_key
from pipeline.contracts.topics import TICKS_TOPIC
from pipeline.core.kafka import make_producer
from pipeline.ingest.simulator import spec_of
from pipeline.ops.sql_client import worker_query

TENANT = "bench-latency"
WARMUP_S = 3.0
SLICE_S = 0.005
DRAIN_S = 15.0
CH_OFFSETS_SQL = stored_offsets_sql(TENANT)


def _now_us() -> int:
    return time.time_ns() // 1_000


class LatencyRun:
    """The producer of one latency measurement, and the per-tick latencies from the prober's observations."""

    def __init__(self, settings: Settings, rate: int, seconds: float, reporter: Reporter) -> None:
        self.settings = settings
        self.rate = rate
        self.seconds = seconds
        self.reporter = reporter
        self.keys = [hot_key(TENANT, BROKER, symbol) for symbol in SYMBOL_NAMES]
        self.sent_at: list[list[int]] = [[] for _ in self.keys]  # send times (µs) per key, measured ticks
        self.delivered: dict[int, list[tuple[int, int]]] = {}  # partition -> (offset, send µs), measured ticks
        self.last_stamp: list[int] = [0] * len(self.keys)  # newest send time per key, warm-up included
        self.last_offset: dict[int, int] = {}  # newest delivered offset per partition, warm-up included
        self.sent = 0
        self.acked = 0

    async def run(self, probe: VisibilityProbe) -> dict[str, Any]:
        produced_s = await self._produce()
        deadline = time.monotonic() + DRAIN_S
        while time.monotonic() < deadline and not await self._all_visible():
            await asyncio.sleep(0.1)
        seen = probe.result()
        hot_ms, hot_unseen = self._hot_latencies(seen["hot_key"])
        ch_ms, ch_unseen = self._clickhouse_latencies(seen["clickhouse"])
        return {
            "rate": self.rate, "seconds": self.seconds, "achieved_rate": round(self.sent / produced_s, 1),
            "sent": self.sent, "keys": len(self.keys), "warmup_s": WARMUP_S,
            "probe_interval_ms": {"hot_key": HOT_PROBE_MS, "clickhouse": CH_PROBE_MS},
            "hot_key": latency_summary(hot_ms), "clickhouse": latency_summary(ch_ms),
            "unseen": {"hot_key": hot_unseen, "clickhouse": ch_unseen + (self.sent - self.acked)},
        }

    async def _all_visible(self) -> bool:
        """Whether the newest tick of every key and partition is visible (when to stop the prober)."""
        cache = redis.asyncio.Redis.from_url(self.settings.cache_connection_url)
        try:
            async with cache.pipeline(transaction=False) as pipe:
                for key in self.keys:
                    pipe.hget(key, "volume")
                values = await pipe.execute()
        finally:
            await cache.aclose()
        if any(v is None or int(v) < last for v, last in zip(values, self.last_stamp)):
            return False
        lines = await asyncio.to_thread(worker_query, self.settings, CH_OFFSETS_SQL) or []
        stored = {int(row["p"]): int(row["o"]) for row in map(orjson.loads, lines)}
        return all(stored.get(p, -1) >= o for p, o in self.last_offset.items())

    def _hot_latencies(self, seen: list[list[int]]) -> tuple[list[float], int]:
        latencies: list[float] = []
        pending = [deque(stamps) for stamps in self.sent_at]
        for key, visible, at in seen:
            queue = pending[key]
            while queue and queue[0] <= visible:
                latencies.append((at - queue.popleft()) / 1000)
        return latencies, sum(len(q) for q in pending)

    def _clickhouse_latencies(self, seen: list[list[int]]) -> tuple[list[float], int]:
        latencies: list[float] = []
        pending = {p: deque(sorted(items)) for p, items in self.delivered.items()}
        for partition, offset, at in seen:
            queue = pending.get(partition)
            while queue and queue[0][0] <= offset:
                latencies.append((at - queue.popleft()[1]) / 1000)
        return latencies, sum(len(q) for q in pending.values())

    async def _produce(self) -> float:
        """Produce for warm-up + ``seconds``; returns how long the measured part took."""
        producer = make_producer(self.settings)
        await producer.start()
        rng = random.Random(3)
        specs = [spec_of(symbol) for symbol in SYMBOL_NAMES]
        try:
            started = time.monotonic()
            measured_from = started + WARMUP_S
            total = int(self.rate * (WARMUP_S + self.seconds))
            produced = 0
            while produced < total:
                slice_start = time.monotonic()
                due = min(total, int((slice_start - started) * self.rate))
                while produced < due:
                    k = produced % len(self.keys)
                    spec = specs[k]
                    mid = spec.price * (1 + rng.gauss(0, 1e-4))
                    stamp = _now_us()
                    value = orjson.dumps({
                        "v": 1, "tenant": TENANT, "broker": BROKER, "symbol": SYMBOL_NAMES[k], "time_msc": stamp // 1000,
                        "bid": round(mid - spec.spread / 2, spec.digits), "ask": round(mid + spec.spread / 2, spec.digits),
                        "last": 0.0, "volume": stamp, "volume_real": 0.0, "flags": 6,
                    })
                    future = await producer.send(TICKS_TOPIC, value, key=f"{TENANT}:{BROKER}:{SYMBOL_NAMES[k]}".encode())
                    measured = slice_start >= measured_from
                    self.last_stamp[k] = stamp
                    if measured:
                        self.sent += 1
                        self.sent_at[k].append(stamp)
                    future.add_done_callback(lambda f, stamp=stamp, measured=measured: self._delivered(f, stamp, measured))
                    produced += 1
                self.reporter.update(min(self.seconds, max(0.0, slice_start - measured_from)))
                await asyncio.sleep(max(0.0, SLICE_S - (time.monotonic() - slice_start)))
            await producer.flush()
            return time.monotonic() - measured_from
        finally:
            await producer.stop()

    def _delivered(self, future: asyncio.Future, stamp: int, measured: bool) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        metadata = future.result()
        self.last_offset[metadata.partition] = max(self.last_offset.get(metadata.partition, -1), metadata.offset)
        if measured:
            self.delivered.setdefault(metadata.partition, []).append((metadata.offset, stamp))
            self.acked += 1


class VisibilityProbe:
    """The prober (:mod:`bench.visibility_probe`) running beside the worker, as a child process."""

    def __init__(self, bench: BenchStack, settings: Settings) -> None:
        self._log = open(settings.state_dir.parent / "probe.log", "wb")
        self._proc = subprocess.Popen(python_module("bench.visibility_probe", TENANT, ",".join(SYMBOL_NAMES)),
                                      env=bench.child_env(settings), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._log, text=True)
        assert self._proc.stdout is not None
        if self._proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the visibility probe did not start; see {self._log.name}")

    def result(self) -> dict[str, list[list[int]]]:
        """Stop probing; every change it saw."""
        out, _ = self._proc.communicate("stop\n", timeout=120)
        self._log.close()
        return json.loads(out.strip().splitlines()[-1])


class FloorConsumer:
    """The broker's latency floor (:mod:`bench.consume_floor`) running beside the worker, as a child process."""

    def __init__(self, bench: BenchStack, seconds: float) -> None:
        settings = bench.contender_settings("floor")
        self._log = open(settings.state_dir.parent / "floor.log", "wb")
        self._proc = subprocess.Popen(python_module("bench.consume_floor", str(WARMUP_S + seconds + 3)), env=bench.child_env(settings),
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True)
        assert self._proc.stdout is not None
        if self._proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the floor consumer did not start; see {self._log.name}")

    def start(self) -> None:
        """Count the ticks sent from the end of a warm-up that starts now."""
        assert self._proc.stdin is not None
        self._proc.stdin.write(f"{_now_us() + int(WARMUP_S * 1_000_000)}\n")
        self._proc.stdin.flush()

    def result(self) -> dict[str, Any]:
        out, _ = self._proc.communicate(timeout=120)
        self._log.close()
        return json.loads(out.strip().splitlines()[-1])


def run_latency(bench: BenchStack, plan: Plan, reporter: Reporter, profile_to: Path | None = None) -> dict[str, Any]:
    """The phase's figures; with ``profile_to``, the worker is profiled (py-spy) into that file while measured."""
    bench.fresh_topics()
    worker = bench.worker(bench.contender_settings("latency"))
    with reporter.step("latency: starting a worker on empty topics"):
        worker.start()
        worker.wait_ready(timeout_s=120)
    profiler = Profiler(worker.pid, profile_to) if profile_to is not None and worker.pid is not None else None
    try:
        with reporter.step(f"latency: {plan.latency_rate:,} ticks/s for {plan.latency_s:g} s", total=plan.latency_s):
            floor = FloorConsumer(bench, plan.latency_s)
            probe = VisibilityProbe(bench, worker.settings)
            floor.start()
            result = asyncio.run(LatencyRun(worker.settings, plan.latency_rate, plan.latency_s, reporter).run(probe))
            result["broker_floor"] = floor.result()
        result["worker_checkpoints"] = checkpoint_stats(worker.settings)
        result["profile"] = profiler.stop() if profiler is not None else None
    finally:
        bench.stop_worker(worker)
    reporter.note(f"latency at {result['achieved_rate']:,.0f}/s: hot key p99 {result['hot_key']['p99_ms']} ms, "
                  f"ClickHouse p99 {result['clickhouse']['p99_ms']} ms, bare consumer p99 {result['broker_floor']['p99_ms']} ms")
    return result
