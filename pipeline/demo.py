"""``tickwire demo`` (``make demo``): the main job on the local stack, start to finish.

Starts the stack, applies the topic catalog, starts a worker in the
background (or uses the one already answering), simulates MT5 ticks with a
live progress display, waits until the pipeline has stored them, and prints
what happened and how to query it. The stack and the worker keep running
afterwards so that they can be queried; ``make stop`` stops both.
"""

from __future__ import annotations

import asyncio
import time

import orjson
import redis
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from pipeline import stack
from pipeline.catalog import apply_catalog, load_catalog
from pipeline.config import Settings
from pipeline.dlq import read_dead_letters
from pipeline.producer import TICKS_TOPIC, MT5Producer
from pipeline.simulator import SimulationConfig, SimulationProgress, run_simulation
from pipeline.sql_client import worker_query
from pipeline.worker_process import WorkerProcess, worker_pid_file

MALFORMED = [b"{not json", b'{"v":1,"tenant":"acme","bid":"oops"}', b'{"v":9}']


def _scalar(settings: Settings, sql: str) -> int:
    lines = worker_query(settings, sql) or ["{}"]
    values = list(orjson.loads(lines[0]).values())
    return int(values[0]) if values else 0


def _ensure_worker(settings: Settings, console: Console) -> None:
    try:
        if worker_query(settings, "SELECT 1") is not None:
            console.print(f"worker: already running at {settings.api_url}")
            return
    except Exception:  # noqa: BLE001 - a starting worker answers 503; start ours
        pass
    log = settings.state_dir / "logs" / "worker.log"
    worker = WorkerProcess(settings, log).start()
    worker_pid_file(settings).parent.mkdir(parents=True, exist_ok=True)
    worker_pid_file(settings).write_text(str(worker.pid))
    with console.status("starting the worker (Faust app, consumer group join)..."):
        started = time.monotonic()
        worker.wait_ready(timeout_s=90)
    console.print(f"worker: started, pid {worker.pid}, ready in {time.monotonic() - started:.1f} s, log {log}")


async def _simulate(settings: Settings, config: SimulationConfig, console: Console) -> tuple[int, int, float]:
    progress = Progress(
        TextColumn("simulating MT5 ticks"), BarColumn(), TextColumn("{task.fields[ticks]:>9,} ticks"),
        TextColumn("{task.fields[rate]:>8,.0f}/s"), TextColumn("{task.fields[signals]:>5,} signals"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console,
    )
    task = progress.add_task("sim", total=config.duration_s, ticks=0, rate=0.0, signals=0)

    def on_progress(p: SimulationProgress) -> None:
        progress.update(task, completed=min(p.elapsed_s, config.duration_s), ticks=p.ticks, signals=p.signals,
                        rate=p.ticks / p.elapsed_s if p.elapsed_s else 0.0)

    with Live(progress, console=console, refresh_per_second=8):
        async with MT5Producer(settings) as producer:
            report = await run_simulation(producer, config, on_progress)
            for value in MALFORMED:  # show the DLQ at work
                await producer.send_raw(TICKS_TOPIC, b"acme:demo:BROKEN", value)
    return report.ticks, report.signals, report.seconds


def run_demo(settings: Settings, *, duration_s: float, rate: float, console: Console) -> int:
    console.rule("[bold]tickwire demo")
    try:
        reports = stack.up(settings)
    except stack.StackError as exc:
        console.print(f"[red]the local stack did not start:[/red]\n{exc}")
        return 1
    for r in reports:
        console.print(f"{r.name:9} {r.address:48} {r.outcome}")
    states = asyncio.run(apply_catalog(load_catalog(settings.topics_file), settings.bootstrap_servers))
    console.print("topics:  " + ", ".join(f"{s.name} ({s.action})" for s in states))
    _ensure_worker(settings, console)

    rows_before = _scalar(settings, "SELECT count() FROM tickwire.ticks FINAL")
    dlq_before = len(asyncio.run(read_dead_letters(settings.bootstrap_servers)))
    config = SimulationConfig(rate=rate, duration_s=duration_s)
    started = time.monotonic()
    ticks, signals, sim_seconds = asyncio.run(_simulate(settings, config, console))

    expected = rows_before + ticks
    with console.status("waiting for the pipeline to store every tick..."):
        deadline = time.monotonic() + 120
        rows = rows_before
        while time.monotonic() < deadline and rows < expected:
            rows = _scalar(settings, "SELECT count() FROM tickwire.ticks FINAL")
            time.sleep(0.2)
    caught_up = time.monotonic() - started
    letters = asyncio.run(read_dead_letters(settings.bootstrap_servers))
    cache = redis.Redis.from_url(settings.cache_url, decode_responses=True)
    hot_keys = sum(1 for _ in cache.scan_iter(match="tw:*:tick:*", count=1000))

    summary = Table(title="what happened", show_header=False)
    summary.add_row("ticks produced", f"{ticks:,} in {sim_seconds:.1f} s ({ticks / sim_seconds:,.0f}/s), plus {signals:,} signals")
    summary.add_row("rows in ClickHouse", f"{rows:,} (this run {rows - rows_before:,}; one row per tick, FINAL)")
    summary.add_row("hot keys in cache", f"{hot_keys:,}")
    summary.add_row("DLQ records", f"{len(letters):,} (this run {len(letters) - dlq_before}: malformed records sent on purpose)")
    summary.add_row("end-to-end", f"all ticks stored {caught_up - sim_seconds:.2f} s after the simulator stopped; "
                    f"{ticks / caught_up:,.0f} ticks/s from first produce to last row visible")
    console.print(summary)
    if rows < expected:
        console.print(f"[red]only {rows - rows_before:,} of {ticks:,} ticks are visible; see {settings.state_dir}/logs/worker.log[/red]")
        return 1

    per_symbol = worker_query(settings, "SELECT tenant, symbol, count() AS ticks, max(time) AS last FROM tickwire.ticks FINAL "
                              "GROUP BY tenant, symbol ORDER BY tenant, symbol LIMIT 5") or []
    console.print("[bold]try it yourself[/bold] (the stack and the worker keep running; `make stop` stops them):")
    console.print('  .venv/bin/tickwire sql "SELECT tenant, symbol, count() AS ticks, max(time) AS last '
                  'FROM tickwire.ticks FINAL GROUP BY tenant, symbol ORDER BY tenant, symbol LIMIT 5"')
    for line in per_symbol:
        console.print("    " + line, highlight=False)
    sample = next(cache.scan_iter(match="tw:*:tick:*", count=1000), None)
    if sample:
        port = settings.cache_url.rsplit(":", 1)[1].split("/")[0]
        console.print(f"  .venv/bin/python -c \"import redis; print(redis.Redis(port={port}).hgetall('{sample}'))\"")
        console.print(f"    {cache.hgetall(sample)}", highlight=False)
    console.print("  .venv/bin/tickwire stack status")
    return 0
