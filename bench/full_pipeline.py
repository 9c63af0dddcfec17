"""(2) Full pipeline throughput: ticks and signals whose bars close, through every derived stream.

Before each run the topics are emptied (the derived ones too: a run's bars
must not be consumed again by the next) and preloaded with ticks spread over hours of event
time (so 1m, 5m and 1h bars close all along the backlog) and signals over the
same span. The real worker (default settings: candles 1m,5m,1h, patterns,
correlation and strategy graphs, signal enrichment) is timed, as in (1), from
its partition assignment until every stage has committed everything: the
ingest and signals stages their inputs, then the patterns and graph stages
every bar and enriched signal the first two published (so every bar,
pattern, edge and enriched signal of the backlog is written). Each run has a fresh group and chDB directory, and empty cache,
vectors and graphs. The report gives the rate as a ratio to (1) and what the
last run derived (bars, patterns, edges, enriched signals).

Per stage (``stages``, from the worker's own metrics, sampled while it runs: see
:class:`bench.worker_run.StageSampler`; the run nearest the median): the records
it consumed, the seconds from the worker's partition assignment to the stage's
last commit, their ratio, the peak of its lag in records, and the seconds it
spent in checkpoints. ``backfill``: the time one trading day of the bench's
series would take at the measured rate.

The worker of the last run keeps running with its data: the API benchmark
(:mod:`bench.api_load`) queries it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from falkordb import FalkorDB

from bench.data import signal_records, tick_records
from bench.plan import Plan
from bench.preload import produce
from bench.progress import Reporter
from bench.stack import BenchStack
from bench.stats import rate_summary
from bench.worker_run import StageSampler, stored_rows, time_backlog
from pipeline.config import STAGE_NAMES, Settings
from pipeline.contracts.topics import CANDLES_TOPIC, ENRICHED_TOPIC, SIGNALS_TOPIC, TICKS_TOPIC
from pipeline.devstack.worker_process import WorkerProcess
from pipeline.ops.sql_client import worker_query
from pipeline.ops.topic_scan import count_records
from pipeline.stores.graph.falkordb import GRAPH_PREFIX

PARTITIONS = 12
TIMEOUT_S = 1800.0
DAY_MS = 24 * 3_600_000


def preload(bench: BenchStack, plan: Plan, reporter: Reporter) -> None:
    ticks = tick_records(plan.full_records, span_ms=plan.full_span_ms, seed=21)
    signals = signal_records(plan.full_signals, span_ms=plan.full_span_ms)
    with reporter.step(f"preloading {len(ticks):,} ticks over {plan.full_span_ms / 3_600_000:g} h and "
                       f"{len(signals):,} signals", total=len(ticks) + len(signals)):
        asyncio.run(produce(bench.settings, TICKS_TOPIC, ticks, reporter.update))
        asyncio.run(produce(bench.settings, SIGNALS_TOPIC, signals, lambda n: reporter.update(len(ticks) + n)))


def derived(settings: Settings) -> dict[str, Any]:
    """What the worker derived: bars per timeframe, pattern vectors, graph edges, and the enriched signals
    it published (the records on the enriched topic: the run began with it empty)."""
    bars = {row["timeframe"]: int(row["n"]) for row in map(orjson.loads, worker_query(
        settings, "SELECT timeframe, count() AS n FROM tickwire.candles FINAL GROUP BY timeframe") or [])}
    patterns, with_forward = asyncio.run(_patterns(settings.postgres_connection_dsn))
    graph = FalkorDB.from_url(settings.graph_connection_url)
    correlations = strategies = 0
    for name in graph.list_graphs():
        if not name.startswith(GRAPH_PREFIX):
            continue
        g = graph.select_graph(name)
        correlations += g.ro_query("MATCH ()-[e:CORRELATED]->() RETURN count(e)").result_set[0][0]
        strategies += g.ro_query("MATCH ()-[e:SIGNALS]->() RETURN count(e)").result_set[0][0]
    return {"ticks": stored_rows(settings), "signals": stored_rows(settings, "signals"), "bars": bars,
            "patterns": patterns, "patterns_with_forward_return": with_forward,
            "correlation_edges": correlations, "strategy_edges": strategies,
            "enriched_signals": asyncio.run(count_records(settings.bootstrap_servers, ENRICHED_TOPIC))}


async def _patterns(dsn: str) -> tuple[int, int]:
    connection = await asyncpg.connect(dsn)
    try:
        row = await connection.fetchrow("SELECT count(*), count(forward_return) FROM patterns")
        assert row is not None  # an aggregate always has a row
        return int(row[0]), int(row[1])
    finally:
        await connection.close()


def run_full_pipeline(bench: BenchStack, plan: Plan, reporter: Reporter, ingest_rate: float,
                      profile_to: Path | None = None) -> tuple[dict[str, Any], WorkerProcess]:
    """The phase's figures, and the last run's worker (still running, for the API benchmark).

    With ``profile_to``, the last run is profiled (py-spy) into that file.
    """
    records = plan.full_records + plan.full_signals
    topics = {TICKS_TOPIC: PARTITIONS, SIGNALS_TOPIC: PARTITIONS}
    runs: list[dict[str, Any]] = []
    worker = None
    for run in range(1, plan.full_runs + 1):
        # every run from empty topics: the derived topics an earlier run filled would be consumed again
        # (each run has a fresh group), adding that run's bars to every later run's downstream work
        bench.fresh_topics()  # stops the earlier run's worker
        preload(bench, plan, reporter)
        worker = bench.worker(bench.contender_settings("full"))
        sampler = StageSampler(worker.settings.api_url)
        with reporter.step(f"full pipeline run {run}/{plan.full_runs}", total=records):
            timeline = asyncio.run(time_backlog(worker, topics, records, timeout_s=TIMEOUT_S, on_poll=reporter.update,
                                                profile_to=profile_to if run == plan.full_runs else None,
                                                downstream=(CANDLES_TOPIC, ENRICHED_TOPIC), sampler=sampler))
        stages = {name: sampler.stages[name].as_dict(timeline.assigned) for name in STAGE_NAMES}
        runs.append({**timeline.as_dict(), "stages": stages})
        reporter.note(f"full pipeline   run {run}: {timeline.rate:>10,.0f} records/s  ({records:,} in {timeline.seconds:.2f} s)")
    assert worker is not None
    summary = rate_summary([r["rate"] for r in runs])
    median = summary["median"]
    assert isinstance(median, float)
    median_run = min(runs, key=lambda r: abs(r["rate"] - median))
    return {
        "ticks": plan.full_records, "signals": plan.full_signals, "event_span_ms": plan.full_span_ms,
        "runs": plan.full_runs, **summary, "details": runs,
        "ratio_to_ingest": round(median / ingest_rate, 3),
        "stages": median_run["stages"],
        "backfill": backfill(plan, median),
        "derived": derived(worker.settings),
        "profile": timeline.profile,
    }, worker


def backfill(plan: Plan, rate: float) -> dict[str, Any]:
    """How long a replay of one trading day would take at the measured full-pipeline ``rate``: the day of the
    bench's 150 series at the event-time density of its data (``full_records`` ticks per ``full_span_ms``)."""
    ticks = round(plan.full_records * DAY_MS / plan.full_span_ms)
    return {"volume": f"one trading day (24 h) of 150 symbols (3 tenants x 50) at their simulated rate in this "
                      f"bench ({plan.full_records:,} ticks per {plan.full_span_ms / 3_600_000:g} h) = {ticks:,} ticks",
            "ticks": ticks, "seconds_estimated": round(ticks / rate, 1) if rate > 0 else None}
