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
@click.option("--name", default=None,
              help="Results are written as NAME.json and NAME.png (default: full or quick, then the phases of "
                   "a partial run, e.g. full-api).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory of the results (default: bench/results).")
@click.option("--profile", is_flag=True, help="Record py-spy profiles of the worker (ingest, full pipeline, latency) and of the replay.")
@click.option("--only", "only", default=None, metavar="PHASES",
              help="Run only these phases, comma-separated: ingest, replay, full, api, latency, memory. api without "
                   "full first runs one full-pipeline run to fill the stores (and says so); replay without ingest "
                   "preloads the ingest ticks and times one live worker run as its baseline.")
def bench(quick: bool, name: str | None, out_dir: Path | None, profile: bool, only: str | None) -> None:
    """Throughput against a ceiling and a peer, replay, latency, API speed and memory, measured in one run."""
    from bench.plan import FULL, QUICK
    from bench.runner import PHASES, RESULTS_DIR, run_bench, run_name

    phases = PHASES if only is None else tuple(p.strip() for p in only.split(",") if p.strip())
    if not phases or not set(phases) <= set(PHASES):
        raise click.BadParameter(f"choose among {', '.join(PHASES)} (got {only!r})", param_hint="--only")
    phases = tuple(p for p in PHASES if p in phases)
    plan = QUICK if quick else FULL
    console = Console()
    signal.signal(signal.SIGTERM, _interrupt)  # stop the bench's stack and workers on SIGTERM too
    try:
        run_bench(plan, name or run_name(plan, phases), out_dir or RESULTS_DIR, console, profile=profile,
                  phases=phases)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; the bench's stack was stopped[/yellow]")
        sys.exit(130)
