"""(5) Memory: the worker's RSS as the number of ticks it processed grows.

A worker with default settings runs on empty topics while the bench produces
``memory_records`` ticks in chunks, with the full pipeline's event-time
density (bars of every timeframe close, patterns and edges are derived), so
every piece of state the worker keeps is exercised. Every second the bench
samples the worker's RSS (psutil; chDB lives in the worker process, so its
memory counts) and the records the worker committed. Reported: the samples,
the RSS once ``memory_steady_at`` ticks were committed (steady state), at the
end (all committed), and the growth between the two.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psutil

from bench.data import EPOCH_MS, tick_records
from bench.plan import Plan
from bench.preload import produce
from bench.progress import Reporter
from bench.stack import BenchStack
from bench.worker_run import CommitWatcher, partitions_of
from pipeline.config import Settings
from pipeline.contracts.topics import TICKS_TOPIC

CHUNK = 250_000
SAMPLE_S = 1.0
TIMEOUT_S = 3600.0
MB = 1 << 20


async def _produce_chunks(settings: Settings, total: int, span_per_tick_ms: float) -> None:
    for i, start in enumerate(range(0, total, CHUNK)):
        n = min(CHUNK, total - start)
        chunk = await asyncio.to_thread(tick_records, n, start_ms=EPOCH_MS + int(start * span_per_tick_ms),
                                        span_ms=int(n * span_per_tick_ms), seed=100 + i)
        await produce(settings, TICKS_TOPIC, chunk)


async def _sample(settings: Settings, pid: int, total: int, reporter: Reporter) -> list[dict[str, float]]:
    process = psutil.Process(pid)
    samples = []
    started = time.monotonic()
    async with CommitWatcher(settings, partitions_of({TICKS_TOPIC: 12})) as watcher:
        while True:
            committed = await watcher.committed()
            samples.append({"t_s": round(time.monotonic() - started, 1), "ticks": committed,
                            "rss_mb": round(process.memory_info().rss / MB, 1)})
            reporter.update(committed)
            if committed >= total:
                return samples
            if time.monotonic() - started > TIMEOUT_S:
                raise TimeoutError(f"the worker committed {committed:,} of {total:,} ticks in {TIMEOUT_S:.0f} s")
            await asyncio.sleep(SAMPLE_S)


async def _measure(settings: Settings, pid: int, plan: Plan, reporter: Reporter) -> list[dict[str, float]]:
    span_per_tick_ms = plan.full_span_ms / plan.full_records
    producing = asyncio.create_task(_produce_chunks(settings, plan.memory_records, span_per_tick_ms))
    samples = await _sample(settings, pid, plan.memory_records, reporter)
    await producing
    return samples


def run_memory(bench: BenchStack, plan: Plan, reporter: Reporter) -> dict[str, Any]:
    bench.fresh_topics()
    worker = bench.worker(bench.contender_settings("memory"))
    with reporter.step("memory: starting a worker on empty topics"):
        worker.start()
        worker.wait_ready(timeout_s=120)
    try:
        assert worker.pid is not None
        with reporter.step(f"memory: {plan.memory_records:,} ticks through one worker", total=plan.memory_records):
            samples = asyncio.run(_measure(worker.settings, worker.pid, plan, reporter))
    finally:
        bench.stop_worker(worker)
    steady = next(s for s in samples if s["ticks"] >= plan.memory_steady_at)
    end = samples[-1]
    growth = (end["rss_mb"] - steady["rss_mb"]) / steady["rss_mb"] * 100
    reporter.note(f"memory: RSS {steady['rss_mb']:.0f} MB at {steady['ticks']:,} ticks, {end['rss_mb']:.0f} MB at "
                  f"{end['ticks']:,} ({growth:+.1f}%)")
    return {"ticks": plan.memory_records, "steady_at": plan.memory_steady_at, "rss_steady_mb": steady["rss_mb"],
            "rss_end_mb": end["rss_mb"], "growth_pct": round(growth, 1), "samples": samples}
