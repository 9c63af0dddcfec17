"""One benchmark run, start to finish: its own stack, the six measurements, the results.

Order: (1) ingest, replay (of (1)'s ticks, still in the topic, into empty
stores), (2) full pipeline, (4) API on the last full-pipeline worker (which
holds derived data), (3) latency, (5) memory. Each phase that needs it starts
from empty topics and stores. The stack is stopped and its
state deleted at the end, whatever happened.

A partial run (``tickwire bench --only PHASES``, :data:`PHASES`) runs only
the phases named, in that order, and reports only their figures and targets.
The API phase needs a worker holding the full pipeline's data: without the
full phase it first runs one full-pipeline run of the plan's size
(:func:`run_api_preload`: one run instead of ``full_runs``, reported under
``api.preload``, not as the full phase's figures). Without the ingest phase
the full pipeline's ratio to ingest is null, and the replay phase preloads
(1)'s ticks and times one live worker run itself as its baseline.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.api_load import ENDPOINTS, UNDER_INGEST, run_api
from bench.chart import write_chart
from bench.full_pipeline import run_full_pipeline
from bench.ingest import CONTENDERS, run_ingest
from bench.latency import run_latency
from bench.memory import run_memory
from bench.peer_env import QUIXSTREAMS
from bench.plan import Plan
from bench.progress import Reporter
from bench.replay import run_replay
from bench.report import print_tables, targets, write_json
from bench.stack import BenchStack
from pipeline.config import Settings
from pipeline.devstack.worker_process import WorkerProcess

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: The phases of a run, in the order they run.
PHASES = ("ingest", "replay", "full", "api", "latency", "memory")


def _versions() -> dict[str, str]:
    packages = ("tickwire", "faust-streaming", "aiokafka", "chdb", "clickhouse-connect", "redis", "msgspec", "orjson")
    return {**{p: metadata.version(p) for p in packages}, "quixstreams": QUIXSTREAMS.split("==")[1]}


def _machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "load_average": [round(x, 2) for x in os.getloadavg()], "versions": _versions()}


def steps(plan: Plan, phases: tuple[str, ...] = PHASES) -> int:
    """Steps of the progress display of ``phases`` (with the API's preload when the full phase is not run)."""
    full = 1 + plan.full_runs
    counts = {"ingest": 1 + plan.runs * len(CONTENDERS), "replay": plan.runs + (0 if "ingest" in phases else 2),
              "full": full, "api": len(ENDPOINTS) + len(UNDER_INGEST) + (0 if "full" in phases else 2), "latency": 2,
              "memory": 2 + (1 + len(plan.memory_stages) if plan.memory_stages else 0)}
    return sum(counts[phase] for phase in phases)


def run_name(plan: Plan, phases: tuple[str, ...]) -> str:
    """The default name of a run's results: the plan's mode, then the phases of a partial run."""
    return plan.mode if phases == PHASES else "-".join((plan.mode, *phases))


def run_api_preload(bench: BenchStack, plan: Plan, reporter: Reporter,
                    profile_to: Path | None) -> tuple[dict[str, Any], WorkerProcess]:
    """One full-pipeline run of ``plan``'s data for the API phase of a run without the full phase."""
    figures, worker = run_full_pipeline(bench, dataclasses.replace(plan, full_runs=1), reporter, math.nan, profile_to)
    return {"what": "one full-pipeline run to fill the stores for the API phase (not the full phase's figures)",
            "ticks": figures["ticks"], "signals": figures["signals"], "records_per_s": figures["median"],
            "derived": figures["derived"]}, worker


def run_bench(plan: Plan, name: str, out_dir: Path, console: Console, *, profile: bool = False,
              stack_settings: Settings | None = None, phases: tuple[str, ...] = PHASES) -> dict[str, Any]:
    """Run the benchmarks of ``plan`` named in ``phases`` (see the module docstring); write
    ``<out_dir>/<name>.json`` and ``.png``; return the results.

    The bench starts (and stops) a stack of its own, unless given the settings of a running one.
    """
    unknown = set(phases) - set(PHASES)
    if unknown or not phases:
        raise ValueError(f"phases must be some of {', '.join(PHASES)}; got {', '.join(phases) or 'none'}")
    phases = tuple(p for p in PHASES if p in phases)
    started = time.monotonic()
    results: dict[str, Any] = {
        "name": name, "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["tickwire", "bench", *sys.argv[2:]]), "plan": plan.as_dict(), "phases": list(phases),
        "machine": _machine(),
    }

    def profile_file(phase: str) -> Path | None:
        return out_dir / "profiles" / f"{name}-{phase}.txt" if profile else None

    if stack_settings is None:
        bench = BenchStack.start(plan.session_timeout_ms)
    else:
        bench = BenchStack.attach(stack_settings, plan.session_timeout_ms)
    try:
        with Reporter(console, steps(plan, phases)) as reporter:
            if "ingest" in phases:
                results["ingest"] = run_ingest(bench, plan, reporter, profile_file("ingest"))
            ingest = results["ingest"]["contenders"]["tickwire"]["median"] if "ingest" in phases else math.nan
            if "replay" in phases:
                results["replay"] = run_replay(bench, plan, reporter, None if math.isnan(ingest) else ingest,
                                               profile_file("replay"))
            if "full" in phases:
                results["full_pipeline"], worker = run_full_pipeline(bench, plan, reporter, ingest, profile_file("full"))
                if "ingest" not in phases:
                    results["full_pipeline"]["ratio_to_ingest"] = None  # no ingest figure in this run
            if "api" in phases:
                preload = None
                if "full" not in phases:
                    reporter.note("API phase without the full phase: one full-pipeline run first, to fill the stores")
                    preload, worker = run_api_preload(bench, plan, reporter, profile_file("full"))
                results["api"] = run_api(worker.settings, plan, reporter)
                if preload is not None:
                    results["api"]["preload"] = preload
            if "latency" in phases:
                results["latency"] = run_latency(bench, plan, reporter, profile_file("latency"))
            if "memory" in phases:
                results["memory"] = run_memory(bench, plan, reporter)
    finally:
        bench.close()
    results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    results["duration_s"] = round(time.monotonic() - started, 1)
    results["targets"] = targets(results)
    write_json(results, out_dir / f"{name}.json")
    write_chart(results, out_dir / f"{name}.png")
    print_tables(results, console)
    console.print(f"results: {out_dir / f'{name}.json'}, chart: {out_dir / f'{name}.png'} ({results['duration_s']:.0f} s)")
    return results
