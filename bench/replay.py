"""Replay: ``tickwire replay`` of retained ticks into empty stores, against the live ingest rate.

The ticks are those of (1) (:mod:`bench.ingest`): the phase runs right after
it, on the topic as (1) left it (all ticks within one minute of event time:
the tick path, the same work as the live worker's in (1)). Without the ingest
phase in the run, it preloads the same ticks and times one live worker run
itself, as the baseline (``baseline``).

Each run is ``tickwire replay --fresh --json`` as a user runs a backfill
(every stage, every role), in a process of its own, into empty stores: a new
chDB directory and state directory, an empty cache, vectors and graphs.
Timed as (1) is: (1) from the worker's partition assignment to its last
commit, the replay by its own report, from each stage's consumer start to the
stage's last checkpoint (``seconds``, summed over the stages it ran one after
the other); the process's start-up (imports, opening the stores) and exit are
reported apart (``process_s``). The rate is the ticks over ``seconds``, and
``ratio_to_ingest`` its median over (1)'s tickwire median of the same run.

Checked after each run: the rows a query sees (``ticks FINAL``) and the hot
keys written, against the ticks and the series; the bench fails otherwise.
While it runs, its progress bar follows the replay's own progress file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import redis

from bench.data import universe
from bench.ingest import preload, run_tickwire
from bench.plan import Plan
from bench.profile import Profiler
from bench.progress import Reporter
from bench.stack import BenchStack
from bench.stats import rate_summary
from pipeline.config import Settings
from pipeline.ops.replay import ReplayPlan, progress_path

TIMEOUT_S = 1800.0
POLL_S = 0.25


class ReplayFailed(RuntimeError):
    """The replay exited without a complete report, or stored other than what it read."""


def _replayed(progress_file: Path) -> int:
    """Records the replay has checkpointed so far, by its progress file (0 before the first checkpoint)."""
    try:
        state = json.loads(progress_file.read_text())
    except (FileNotFoundError, ValueError):
        return 0
    return sum(sum(stage["next"].values()) for stage in state["stages"].values())


def _stored_ticks(env: dict[str, str]) -> int:
    """Rows of ``ticks FINAL`` in the replay's chDB directory (no process holds it now: ``tickwire sql`` opens it)."""
    done = subprocess.run([sys.executable, "-m", "pipeline", "sql", "SELECT count() AS n FROM tickwire.ticks FINAL"],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise ReplayFailed(f"tickwire sql on the replayed store failed: {done.stderr.strip()[-500:]}")
    return int(orjson.loads(done.stdout.splitlines()[0])["n"])


def _hot_keys(settings: Settings) -> int:
    return sum(1 for _ in redis.Redis.from_url(settings.cache_connection_url).scan_iter(match="tw:*:tick:*", count=1000))


def replay_once(bench: BenchStack, records: int, reporter: Reporter,
                profile_to: Path | None = None) -> tuple[dict[str, Any], dict[str, object] | None]:
    """One ``tickwire replay`` into empty stores, checked: its figures, and with ``profile_to`` py-spy's summary
    of the whole replay process (its start-up included: the replay is one process from start to end)."""
    bench.clear_derived()
    settings = bench.contender_settings("replay")
    env = bench.child_env(settings)
    progress_file = progress_path(settings, ReplayPlan())
    log_file = settings.state_dir.parent / "replay.log"
    started = time.monotonic()
    with open(log_file, "wb") as log:
        child = subprocess.Popen([sys.executable, "-m", "pipeline", "replay", "--fresh", "--json"], env=env,
                                 stdout=subprocess.PIPE, stderr=log)
        profiler = Profiler(child.pid, profile_to) if profile_to is not None else None
        try:
            while child.poll() is None:
                if time.monotonic() - started > TIMEOUT_S:
                    raise ReplayFailed(f"tickwire replay did not finish in {TIMEOUT_S:.0f} s; log {log_file}")
                reporter.update(min(_replayed(progress_file), records))
                time.sleep(POLL_S)
        finally:
            if child.poll() is None:
                child.kill()
            output = child.communicate()[0].decode(errors="replace")
    process_s = time.monotonic() - started
    profile = profiler.stop() if profiler is not None else None
    if child.returncode != 0 or not output.strip():
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-20:])
        raise ReplayFailed(f"tickwire replay exited {child.returncode}:\n{tail}")
    report = json.loads(output.strip().splitlines()[-1])
    stages = {s["stage"]: s for s in report["stages"]}
    ticks = stages["ingest"]["records"]
    seconds = sum(s["seconds"] for s in report["stages"])
    stored, hot = _stored_ticks(env), _hot_keys(settings)
    if not report["complete"] or ticks != records or stored != records or hot != len(universe()):
        raise ReplayFailed(f"replayed {ticks:,} of {records:,} ticks (complete: {report['complete']}), stored {stored:,}, "
                           f"{hot} hot keys of {len(universe())}; log {log_file}")
    return {"records": ticks, "seconds": round(seconds, 3), "rate": round(ticks / seconds, 1),
            "process_s": round(process_s, 3), "stored": stored, "hot_keys": hot,
            "stages": {name: {"records": s["records"], "seconds": s["seconds"]} for name, s in stages.items()}}, profile


def run_replay(bench: BenchStack, plan: Plan, reporter: Reporter, ingest_rate: float | None,
               profile_to: Path | None = None) -> dict[str, Any]:
    """The phase's figures. ``ingest_rate``: (1)'s tickwire median of this run, whose ticks are still in the topic;
    None when (1) did not run: then the ticks are preloaded and one live worker run is the baseline."""
    records = plan.ingest_records
    baseline = None
    if ingest_rate is None:
        bench.fresh_topics()
        preload(bench, records, plan.ingest_span_ms, reporter)
        bench.clear_cache()
        with reporter.step("replay: baseline, one live worker run through the same ticks", total=records):
            baseline, _ = run_tickwire(bench, records, reporter)
        ingest_rate = float(baseline["rate"])
        reporter.note(f"replay baseline (live worker): {ingest_rate:>10,.0f} ticks/s")
    runs = []
    profile = None
    for run in range(1, plan.runs + 1):
        with reporter.step(f"replay run {run}/{plan.runs}: {records:,} ticks into empty stores", total=records):
            result, profile = replay_once(bench, records, reporter, profile_to if run == plan.runs else None)
        runs.append(result)
        reporter.note(f"replay          run {run}: {result['rate']:>10,.0f} ticks/s  ({records:,} in "
                      f"{result['seconds']:.2f} s; process {result['process_s']:.1f} s)")
    summary = rate_summary([r["rate"] for r in runs])
    return {"records": records, "event_span_ms": plan.ingest_span_ms, "runs": plan.runs, **summary, "details": runs,
            "ingest_rate": round(ingest_rate, 1), "ratio_to_ingest": round(float(summary["median"]) / ingest_rate, 3),
            "baseline": baseline, "profile": profile}
