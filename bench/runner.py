"""One benchmark run, start to finish: its own stack, the five measurements, the results.

Order: (1) ingest, (2) full pipeline, (4) API on the last full-pipeline
worker (which holds derived data), (3) latency, (5) memory. Each phase that
needs it starts from empty topics and stores. The stack is stopped and its
state deleted at the end, whatever happened.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.api_load import ENDPOINTS, run_api
from bench.chart import write_chart
from bench.full_pipeline import run_full_pipeline
from bench.ingest import CONTENDERS, run_ingest
from bench.latency import run_latency
from bench.memory import run_memory
from bench.peer_env import QUIXSTREAMS
from bench.plan import Plan
from bench.progress import Reporter
from bench.report import print_tables, targets, write_json
from bench.stack import BenchStack
from pipeline.config import Settings

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _versions() -> dict[str, str]:
    packages = ("tickwire", "faust-streaming", "aiokafka", "chdb", "clickhouse-connect", "redis", "msgspec", "orjson")
    return {**{p: metadata.version(p) for p in packages}, "quixstreams": QUIXSTREAMS.split("==")[1]}


def _machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "load_average": [round(x, 2) for x in os.getloadavg()], "versions": _versions()}


def steps(plan: Plan) -> int:
    """Steps of the progress display: ingest, full pipeline, API, latency, memory."""
    return (1 + plan.runs * len(CONTENDERS)) + (1 + plan.full_runs) + len(ENDPOINTS) + 2 + 2


def run_bench(plan: Plan, name: str, out_dir: Path, console: Console, *, profile: bool = False,
              stack_settings: Settings | None = None) -> dict[str, Any]:
    """Run every benchmark of ``plan``; write ``<out_dir>/<name>.json`` and ``.png``; return the results.

    The bench starts (and stops) a stack of its own, unless given the settings of a running one.
    """
    started = time.monotonic()
    results: dict[str, Any] = {
        "name": name, "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["tickwire", "bench", *sys.argv[2:]]), "plan": plan.as_dict(), "machine": _machine(),
    }

    def profile_file(phase: str) -> Path | None:
        return out_dir / "profiles" / f"{name}-{phase}.txt" if profile else None

    if stack_settings is None:
        bench = BenchStack.start(plan.session_timeout_ms)
    else:
        bench = BenchStack.attach(stack_settings, plan.session_timeout_ms)
    try:
        with Reporter(console, steps(plan)) as reporter:
            results["ingest"] = run_ingest(bench, plan, reporter, profile_file("ingest"))
            tickwire = results["ingest"]["contenders"]["tickwire"]["median"]
            results["full_pipeline"], worker = run_full_pipeline(bench, plan, reporter, tickwire, profile_file("full"))
            results["api"] = run_api(worker.settings, plan, reporter)
            results["latency"] = run_latency(bench, plan, reporter, profile_file("latency"))
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
