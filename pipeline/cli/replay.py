"""``tickwire replay``."""

from __future__ import annotations

import asyncio
import signal
import sys

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pipeline.config import STAGE_NAMES, Settings, SettingsError, get_settings
from pipeline.ops.replay import Bound, ReplayError, ReplayPlan, ReplayProgress, ReplayReport, replay
from pipeline.runtime.topology import ROLES

console = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    try:
        return get_settings()
    except SettingsError as exc:
        err.print(f"[red]{exc}[/red]")
        sys.exit(2)


def _bound(text: str | None) -> Bound | None:
    return None if text is None else Bound.parse(text)


@click.command("replay")
@click.option("--stages", default=",".join(STAGE_NAMES), show_default=True,
              help="Stages to replay, comma separated; each reads its own input topics, upstream first.")
@click.option("--from", "start", help="Start: P:O[,P:O..] offsets, epoch ms or ISO time (record time). Default: log start.")
@click.option("--to", "end", help="End (exclusive), same forms. Default: the log end when the replay reaches it.")
@click.option("--tenant", "tenants", multiple=True, help="Only these tenants.")
@click.option("--symbol", "symbols", multiple=True, help="Only these symbols.")
@click.option("--sinks", "roles", default=",".join(ROLES), show_default=True, help="Roles to write, comma separated.")
@click.option("--fresh", is_flag=True, help="Ignore a saved unfinished run of the same replay.")
def replay_command(stages: str, start: str | None, end: str | None, tenants: tuple[str, ...],
                   symbols: tuple[str, ...], roles: str, fresh: bool) -> None:
    """Replay retained records through the pipeline's stages (backfill). Idempotent; resumable; Ctrl-C stops cleanly."""
    settings = _settings()
    try:
        plan = ReplayPlan(tuple(s.strip() for s in stages.split(",") if s.strip()), _bound(start), _bound(end),
                          frozenset(tenants), frozenset(symbols), frozenset(r.strip() for r in roles.split(",") if r.strip()))
    except ReplayError as exc:
        err.print(f"[red]{exc}[/red]")
        sys.exit(2)
    progress = Progress(TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]:>9,.0f} rec/s"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=console)
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
        err.print(f"[red]{exc}[/red]")
        sys.exit(1)
    verb = "resumed and " if report.resumed else ""
    console.print(f"replay {report.plan_id}: {verb}{'finished' if report.complete else 'stopped'}: {report.records:,} records "
                  f"in {report.seconds:.1f} s ({report.records / max(report.seconds, 1e-9):,.0f}/s)")
    for p in report.progress:
        console.print(f"  {p.stage}: {p.records:,} records; {p.skipped_invalid:,} invalid skipped, "
                      f"{p.filtered_out:,} filtered out, {p.failed:,} failed")
    if not report.complete:
        console.print("run the same command again to resume")
        sys.exit(130)
