"""(1) Ingest throughput: tickwire against a decode ceiling, a sink ceiling, Quix Streams and naive Faust.

The topic ``mt5.ticks.v1`` (12 partitions) is emptied and preloaded once with
the benchmark's ticks (3 tenants × 50 symbols, ~180-byte JSON values), all
timed within one minute of event time: with tickwire's default settings
(candles on 1m, 5m, 1h) no bar closes, so this measures the tick path
(decode, ClickHouse rows, hot keys, the candle clock) that the ceilings and
the peers also do; :mod:`bench.full_pipeline` measures bars closing.

Then, round after round (so the machine's load changes affect every
contender alike), each contender consumes the same preloaded records with a
fresh consumer group, a fresh chDB directory and an empty cache:

- ``tickwire``: the real worker (``WorkerProcess``, default settings), timed
  from its partition assignment to the commit of the last record
  (:mod:`bench.worker_run`); start-up and group join are reported apart;
- ``decode_ceiling`` (a) and ``sink_ceiling`` (b): :mod:`bench.ceiling`;
- ``quix_peer`` (c): :mod:`bench.quix_peer`, in its own venv;
- ``faust_naive`` (d): :mod:`bench.faust_naive`, on the first ``faust_records``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bench.contender import Measurement, python_module, run_child
from bench.data import tick_records, universe
from bench.peer_env import QUIXSTREAMS, peer_python
from bench.plan import Plan
from bench.preload import produce
from bench.progress import Reporter
from bench.stack import BenchStack
from bench.stats import rate_summary
from bench.worker_run import WorkerTimeline, stored_rows, time_backlog
from pipeline.contracts.topics import TICKS_TOPIC

TICK_PARTITIONS = 12
CHILD_TIMEOUT_S = 900.0

#: name -> what it is (the report's legend)
CONTENDERS: dict[str, str] = {
    "tickwire": "tickwire worker (WorkerProcess, default settings)",
    "decode_ceiling": "(a) aiokafka getmany + orjson decode only",
    "sink_ceiling": "(b) aiokafka getmany + decode + ClickHouse insert + hot keys + commit",
    "quix_peer": f"(c) Quix Streams ({QUIXSTREAMS}), BatchingSink",
    "faust_naive": "(d) naive Faust agent (async for value in stream, 500-record writes)",
}


def preload(bench: BenchStack, records: int, span_ms: int, reporter: Reporter) -> float:
    """Produce ``records`` ticks timed within ``span_ms``; returns their mean value size in bytes."""
    ticks = tick_records(records, span_ms=span_ms)
    with reporter.step(f"preloading {records:,} ticks into {TICKS_TOPIC}", total=records):
        asyncio.run(produce(bench.settings, TICKS_TOPIC, ticks, reporter.update))
    return sum(len(value) for _, value in ticks) / len(ticks)


def run_tickwire(bench: BenchStack, records: int, reporter: Reporter,
                 profile_to: Path | None = None) -> tuple[dict[str, Any], dict[str, object] | None]:
    """One run of the real worker through the backlog (stopped by SIGTERM afterwards), and its profile if asked."""
    settings = bench.contender_settings("tickwire")
    worker = bench.worker(settings)
    try:
        timeline: WorkerTimeline = asyncio.run(time_backlog(
            worker, {TICKS_TOPIC: TICK_PARTITIONS}, records, timeout_s=CHILD_TIMEOUT_S, on_poll=reporter.update,
            profile_to=profile_to))
        return {**timeline.as_dict(), "stored": stored_rows(settings)}, timeline.profile
    finally:
        bench.stop_worker(worker)


def run_contender_child(bench: BenchStack, name: str, records: int) -> dict[str, Any]:
    """One run of a child contender; its measurement as a dict with its rate."""
    settings = bench.contender_settings(name)
    chdb_dir = str(settings.chdb_path)
    if name == "decode_ceiling":
        argv = python_module("bench.ceiling", "decode", str(records), chdb_dir)
    elif name == "sink_ceiling":
        argv = python_module("bench.ceiling", "sink", str(records), chdb_dir)
    elif name == "quix_peer":
        argv = python_module("bench.quix_peer", str(records), chdb_dir, python=str(peer_python()))
    elif name == "faust_naive":
        argv = python_module("bench.faust_naive", str(records), chdb_dir)
    else:
        raise ValueError(f"unknown contender {name}")
    measured: Measurement = run_child(argv, bench.child_env(settings), settings.state_dir.parent / f"{name}.log", CHILD_TIMEOUT_S)
    return {"records": measured.records, "join_s": round(measured.join_s, 3), "seconds": round(measured.seconds, 3),
            "rate": round(measured.rate, 1), "stored": measured.stored}


def run_ingest(bench: BenchStack, plan: Plan, reporter: Reporter, profile_to: Path | None = None) -> dict[str, Any]:
    """The phase's figures; with ``profile_to``, the last tickwire run is profiled (py-spy) into that file."""
    bench.fresh_topics()
    value_bytes = preload(bench, plan.ingest_records, plan.ingest_span_ms, reporter)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CONTENDERS}
    profile = None
    for round_ in range(1, plan.runs + 1):
        for name in CONTENDERS:
            records = plan.faust_records if name == "faust_naive" else plan.ingest_records
            bench.clear_cache()
            with reporter.step(f"ingest round {round_}/{plan.runs}: {name}", total=records if name == "tickwire" else None):
                if name == "tickwire":
                    last = round_ == plan.runs
                    result, profile = run_tickwire(bench, records, reporter, profile_to if last else None)
                else:
                    result = run_contender_child(bench, name, records)
            runs[name].append(result)
            reporter.note(f"ingest {name:15} run {round_}: {result['rate']:>10,.0f} ticks/s  "
                          f"({result['records']:,} in {result['seconds']:.2f} s, stored {result['stored']:,})")
    contenders = {name: {"description": CONTENDERS[name], **rate_summary([r["rate"] for r in results]), "details": results}
                  for name, results in runs.items()}
    tickwire = contenders["tickwire"]["median"]
    return {
        "records": plan.ingest_records, "value_bytes": round(value_bytes, 1), "partitions": TICK_PARTITIONS,
        "keys": len(universe()), "event_span_ms": plan.ingest_span_ms, "runs": plan.runs,
        "faust_records": plan.faust_records, "contenders": contenders,
        "ratios": {
            "tickwire_vs_sink_ceiling": round(tickwire / contenders["sink_ceiling"]["median"], 3),
            "tickwire_vs_quix_peer": round(tickwire / contenders["quix_peer"]["median"], 3),
            "tickwire_vs_decode_ceiling": round(tickwire / contenders["decode_ceiling"]["median"], 3),
            "tickwire_vs_faust_naive": round(tickwire / contenders["faust_naive"]["median"], 3),
        },
        "profile": profile,
    }
