"""``tickwire replay``."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pipeline.cli.console import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    chdb_held,
    err_console,
    fail,
    out,
    out_json,
    say,
)
from pipeline.cli.console import settings as cli_settings
from pipeline.config import STAGE_NAMES
from pipeline.ops.replay import Bound, ReplayError, ReplayPlan, ReplayProgress, ReplayReport, replay
from pipeline.runtime.topology import ROLES

#: What to do when chDB's data directory is held (the README says the same).
HELD_HINT = "the worker owns the data: stop it first, or replay against a ClickHouse server (TICKWIRE_CLICKHOUSE_DSN=http(s)://...)"


def _bound(text: str | None) -> Bound | None:
    return None if text is None else Bound.parse(text)


def report_json(report: ReplayReport) -> dict[str, Any]:
    """The ``--json`` document of a replay."""
    return {"plan_id": report.plan_id, "complete": report.complete, "resumed": report.resumed,
            "seconds": round(report.seconds, 3), "records": report.records,
            "stages": [{"stage": p.stage, "records": p.records, "total": p.total, "seconds": round(p.seconds, 3),
                        "skipped_invalid": p.skipped_invalid, "filtered_out": p.filtered_out, "failed": p.failed}
                       for p in report.progress]}


@click.command("replay", epilog="""\b
Progress goes to stderr (on a terminal); the report to stdout: a few lines, or
with --json one JSON document: {"plan_id", "complete", "resumed", "seconds",
"records", "stages": [{"stage", "records", "total", "seconds",
"skipped_invalid", "filtered_out", "failed"}]} (a stage's seconds: from its
consumer's start to its last checkpoint).
With chDB only one process may own the data: stop the worker first (or replay
against a ClickHouse server).
Exit codes: 0 finished; 1 failed (a store or the broker unreachable, the chDB
data held by a worker); 2 bad options or settings; 130 stopped (Ctrl-C):
run the same command again to resume.""")
@click.option("--stages", default=",".join(STAGE_NAMES), show_default=True,
              help="Stages to replay, comma separated; each reads its own input topics, upstream first.")
@click.option("--from", "start", help="Start: P:O[,P:O..] offsets, epoch ms or ISO time (record time). Default: log start.")
@click.option("--to", "end", help="End (exclusive), same forms. Default: the log end when the replay reaches it.")
@click.option("--tenant", "tenants", multiple=True, help="Only these tenants.")
@click.option("--symbol", "symbols", multiple=True, help="Only these symbols.")
@click.option("--sinks", "roles", default=",".join(ROLES), show_default=True, help="Roles to write, comma separated.")
@click.option("--fresh", is_flag=True, help="Ignore a saved unfinished run of the same replay.")
@click.option("--json", "as_json", is_flag=True, help="The final report as one JSON document (see below).")
def replay_command(stages: str, start: str | None, end: str | None, tenants: tuple[str, ...],
                   symbols: tuple[str, ...], roles: str, fresh: bool, as_json: bool) -> None:
    """Replay retained records through the pipeline's stages (backfill). Idempotent; resumable; Ctrl-C stops cleanly."""
    try:
        plan = ReplayPlan(tuple(s.strip() for s in stages.split(",") if s.strip()), _bound(start), _bound(end),
                          frozenset(tenants), frozenset(symbols), frozenset(r.strip() for r in roles.split(",") if r.strip()))
    except ReplayError as exc:
        fail(str(exc), EXIT_USAGE)
    settings = cli_settings()
    if settings.chdb_path is not None and chdb_held(settings.chdb_path):
        fail(f"cannot replay: the chDB data at {settings.chdb_path} is held by another process; {HELD_HINT}", EXIT_FAILURE)
    progress_console = err_console()
    # not a terminal: no bars at all
    progress = Progress(TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]:>9,.0f} rec/s"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=progress_console, disable=not progress_console.is_terminal)
    tasks: dict[str, TaskID] = {}

    def on_progress(p: ReplayProgress) -> None:
        if p.stage not in tasks:
            tasks[p.stage] = progress.add_task(p.stage, total=None, rate=0.0)
        progress.update(tasks[p.stage], completed=p.records, total=p.total, rate=p.rate)

    async def run() -> ReplayReport:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        with progress:
            return await replay(settings, plan, stop=stop, fresh=fresh, on_progress=on_progress)

    try:
        report = asyncio.run(run())
    except ReplayError as exc:
        held = settings.chdb_path is not None and chdb_held(settings.chdb_path)
        fail(f"cannot replay: the chDB data at {settings.chdb_path} is held by another process; {HELD_HINT}" if held
             else str(exc), EXIT_FAILURE)
    if as_json:
        out_json(report_json(report))
    else:
        verb = "resumed and " if report.resumed else ""
        lines = [f"replay {report.plan_id}: {verb}{'finished' if report.complete else 'stopped'}: {report.records:,} records "
                 f"in {report.seconds:.1f} s ({report.records / max(report.seconds, 1e-9):,.0f}/s)"]
        lines += [f"  {p.stage}: {p.records:,} records; {p.skipped_invalid:,} invalid skipped, "
                  f"{p.filtered_out:,} filtered out, {p.failed:,} failed" for p in report.progress]
        out("".join(line + "\n" for line in lines))
    if not report.complete:
        say("stopped: run the same command again to resume")
        sys.exit(EXIT_INTERRUPTED)
