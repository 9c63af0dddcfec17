"""(5) Memory: the worker's RSS as the ticks it processed grow, and each stage's peak RSS.

**Growth.** A worker with default settings (every stage, in one process: with
chDB, the default analytics store, one process owns the data) runs on empty
topics while the bench produces ``memory_records`` ticks in chunks, with the
full pipeline's event-time density (bars of every timeframe close, patterns
and edges are derived), so every piece of state the worker keeps is
exercised. Every second the bench samples the worker's RSS (psutil; chDB
lives in the worker process, so its memory counts) and the records the worker
committed. Reported: the samples, the RSS once ``memory_steady_at`` ticks were
committed (steady state), at the end (all committed), the growth between the
two, and the process's peak (the kernel's high-water mark, ``VmHWM``).

**Per stage.** Stages share a process here (one chDB engine per data
directory), so a stage's own figure is that of a worker running it alone
(``--stages <stage>``) over what it consumes: the full pipeline's backlog
(``full_records`` ticks and ``full_signals`` signals over ``full_span_ms``) is
preloaded, then one worker per stage of ``memory_stages`` (all five in the
full run; ``--quick``: ingest and patterns), upstream first, one after the other on
the same chDB directory, each until its group committed every record of its
input topics (the ingest stage's ticks, the signals stage's signals, the
downstream stages' bars and enriched signals that the earlier ones published).
Reported per stage: its records, seconds, its peak RSS (``VmHWM``) and its
RSS at the end. Each figure includes what every worker process holds (the
Python runtime, Faust, the chDB engine): ``baseline_rss_mb``, the worker's RSS
just before its first commit (started, nothing checkpointed yet), is there for
comparison. The signals stage
runs before the patterns stage here, so its enrichment finds no similar
patterns yet (the live worker runs all stages at once).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.data import EPOCH_MS, tick_records
from bench.full_pipeline import preload as preload_full_pipeline
from bench.plan import Plan
from bench.preload import produce
from bench.progress import Reporter
from bench.stack import BenchStack, free_port
from bench.worker_run import CommitWatcher, partitions_of
from pipeline.config import STAGE_NAMES, Settings, load_settings
from pipeline.contracts.topics import TICKS_TOPIC
from pipeline.core.kafka import client_options
from pipeline.devstack.worker_process import WorkerProcess
from pipeline.runtime.log_ends import LogEnds
from pipeline.runtime.source import stage_group
from pipeline.runtime.topology import stages

CHUNK = 250_000
SAMPLE_S = 1.0
STAGE_SAMPLE_S = 0.25
TIMEOUT_S = 3600.0
MB = 1 << 20


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak RSS so far (Linux ``VmHWM``, MB); None where the kernel does not say."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) * 1024 / MB, 1)
    except OSError:
        pass
    return None


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


def _growth(bench: BenchStack, plan: Plan, reporter: Reporter) -> dict[str, Any]:
    bench.fresh_topics()
    worker = bench.worker(bench.contender_settings("memory"))
    with reporter.step("memory: starting a worker on empty topics"):
        worker.start()
        worker.wait_ready(timeout_s=120)
    try:
        assert worker.pid is not None
        with reporter.step(f"memory: {plan.memory_records:,} ticks through one worker", total=plan.memory_records):
            samples = asyncio.run(_measure(worker.settings, worker.pid, plan, reporter))
        peak = peak_rss_mb(worker.pid)
    finally:
        bench.stop_worker(worker)
    steady = next(s for s in samples if s["ticks"] >= plan.memory_steady_at)
    end = samples[-1]
    growth = (end["rss_mb"] - steady["rss_mb"]) / steady["rss_mb"] * 100
    reporter.note(f"memory: RSS {steady['rss_mb']:.0f} MB at {steady['ticks']:,} ticks, {end['rss_mb']:.0f} MB at "
                  f"{end['ticks']:,} ({growth:+.1f}%)")
    return {"ticks": plan.memory_records, "steady_at": plan.memory_steady_at, "rss_steady_mb": steady["rss_mb"],
            "rss_end_mb": end["rss_mb"], "growth_pct": round(growth, 1),
            "peak_rss_mb": peak if peak is not None else max(s["rss_mb"] for s in samples), "samples": samples}


async def _stage_input_ends(settings: Settings, stage: str) -> dict[TopicPartition, int]:
    """The log end of every partition of ``stage``'s input topics, read now."""
    (spec,) = stages((stage,))
    ends = LogEnds(settings, spec.inputs)
    await ends.on_start()
    try:
        await ends.probe()
        return {tp: end.offset for tp, end in ends.ends.items()}
    finally:
        await ends.on_stop()


async def _run_stage(worker: WorkerProcess, stage: str, ends: dict[TopicPartition, int],
                     reporter: Reporter) -> dict[str, Any]:
    """Start ``worker`` (running ``stage`` alone) and follow it until its group committed ``ends``."""
    settings = worker.settings
    total = sum(ends.values())
    started = time.monotonic()
    worker.start()
    assert worker.pid is not None
    process = psutil.Process(worker.pid)
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=stage_group(settings, stage), enable_auto_commit=False)
    await consumer.start()
    baseline = None
    try:
        while True:
            if not worker.running():
                raise RuntimeError(f"the {stage} worker exited:\n{worker.log_tail()}")
            committed = sum([await consumer.committed(tp) or 0 for tp in ends])
            rss = round(process.memory_info().rss / MB, 1)
            if committed == 0:
                baseline = rss  # the last sample before its first commit: started, not yet through a checkpoint
            reporter.update(committed)
            if committed >= total:
                break
            if time.monotonic() - started > TIMEOUT_S:
                raise TimeoutError(f"the {stage} worker committed {committed:,} of {total:,} records in {TIMEOUT_S:.0f} s")
            await asyncio.sleep(STAGE_SAMPLE_S)
    finally:
        await consumer.stop()
    peak = peak_rss_mb(worker.pid)
    return {"records": total, "seconds": round(time.monotonic() - started, 1), "baseline_rss_mb": baseline,
            "peak_rss_mb": peak if peak is not None else rss, "rss_end_mb": rss}


def _per_stage(bench: BenchStack, plan: Plan, reporter: Reporter) -> dict[str, dict[str, Any]]:
    bench.fresh_topics()
    preload_full_pipeline(bench, plan, reporter)
    shared = bench.contender_settings("memory-stages")
    figures = {}
    for stage in (s for s in STAGE_NAMES if s in plan.memory_stages):
        settings = load_settings(**{**shared.model_dump(), "stages": stage, "api_port": free_port()})
        ends = asyncio.run(_stage_input_ends(settings, stage))
        worker = bench.worker(settings)
        try:
            with reporter.step(f"memory: stage {stage} alone, {sum(ends.values()):,} records", total=sum(ends.values())):
                figures[stage] = asyncio.run(_run_stage(worker, stage, ends, reporter))
        finally:
            bench.stop_worker(worker)
        reporter.note(f"memory: stage {stage:9} alone: peak RSS {figures[stage]['peak_rss_mb']:,.0f} MB "
                      f"({figures[stage]['records']:,} records in {figures[stage]['seconds']:.1f} s)")
    return figures


def run_memory(bench: BenchStack, plan: Plan, reporter: Reporter) -> dict[str, Any]:
    """The phase's figures: the growth run's (one worker, every stage), then ``stages``: each stage of
    ``memory_stages`` alone (none: no ``stages``)."""
    growth = _growth(bench, plan, reporter)
    if not plan.memory_stages:
        return growth
    return {**growth, "stages": _per_stage(bench, plan, reporter),
            "stages_method": "one worker per stage (--stages <stage>), one after the other on one chDB directory, "
                             "each over the full pipeline's backlog of its input topics; peak = VmHWM"}
