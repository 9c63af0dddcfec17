"""``tickwire bench``: the benchmarks on a private local stack (see docs/performance.md)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType

import click
from rich.console import Console


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@click.command("bench")
@click.option("--quick", is_flag=True, help="A smoke run (small sizes, one run each; under 2 minutes).")
@click.option("--name", default=None, help="Results are written as NAME.json and NAME.png (default: full or quick).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory of the results (default: bench/results).")
@click.option("--profile", is_flag=True, help="Record py-spy profiles of the worker (ingest, full pipeline, latency).")
def bench(quick: bool, name: str | None, out_dir: Path | None, profile: bool) -> None:
    """Throughput against a ceiling and a peer, latency, API speed and memory, measured in one run."""
    from bench.plan import FULL, QUICK
    from bench.runner import RESULTS_DIR, run_bench

    plan = QUICK if quick else FULL
    console = Console()
    signal.signal(signal.SIGTERM, _interrupt)  # stop the bench's stack and workers on SIGTERM too
    try:
        run_bench(plan, name or plan.mode, out_dir or RESULTS_DIR, console, profile=profile)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; the bench's stack was stopped[/yellow]")
        sys.exit(130)
