"""``tickwire demo`` (``make demo``): the main job on the local stack, start to finish.

1. Starts the stack, applies the topic catalog, starts a worker in the
   background (or uses the one already answering).
2. Backfill: produces the last ``history_minutes`` of simulated MT5 ticks as
   fast as it can and times how fast the worker stores them (the ingest
   figure); this history also gives the derived streams enough closed bars
   for patterns and correlations.
3. Live: simulates ticks and signals at ``rate`` for ``duration_s`` with a
   progress display (plus a few malformed records, for the DLQ).
4. Prints what happened in every store and how to query it.

The stack and the worker keep running afterwards; ``make stop`` stops both.
"""

from __future__ import annotations

import asyncio
import time
from typing import TypedDict

import asyncpg
import orjson
import redis
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from pipeline import devstack as stack
from pipeline.config import Settings, with_secrets
from pipeline.contracts.catalog import apply_catalog, load_catalog
from pipeline.contracts.topics import ENRICHED_TOPIC, TICKS_TOPIC
from pipeline.core.kafka import client_options
from pipeline.devstack.demo_api import show_api_examples
from pipeline.devstack.worker_process import WorkerProcess, worker_pid_file
from pipeline.ingest.producer import MT5Producer
from pipeline.ingest.simulator import SimulationConfig, SimulationProgress, generate_ticks, run_simulation
from pipeline.ops.dead_letters import read_dead_letters
from pipeline.ops.sql_client import worker_query
from pipeline.ops.topic_scan import scan_topic
from pipeline.stores.graph.base import Neighbor, StrategyEdge
from pipeline.stores.graph.falkordb import FalkorGraphStore

MALFORMED = [b"{not json", b'{"v":1,"tenant":"acme","bid":"oops"}', b'{"v":9}']
HISTORY_TICKS_PER_S = 40
ROWS_SQL = "SELECT count() FROM tickwire.ticks FINAL"


def _scalar(settings: Settings, sql: str) -> int:
    lines = worker_query(settings, sql) or ["{}"]
    values = list(orjson.loads(lines[0]).values())
    return int(values[0]) if values else 0


def _wait_rows(settings: Settings, expected: int, console: Console, what: str, timeout_s: float = 180) -> int:
    with console.status(f"waiting for the pipeline to store {what}..."):
        deadline = time.monotonic() + timeout_s
        rows = _scalar(settings, ROWS_SQL)
        while time.monotonic() < deadline and rows < expected:
            time.sleep(0.1)
            rows = _scalar(settings, ROWS_SQL)
    return rows


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
    with console.status("starting the worker (Faust app, stores, consumer group join)..."):
        started = time.monotonic()
        worker.wait_ready(timeout_s=90)
    console.print(f"worker: started, pid {worker.pid}, ready in {time.monotonic() - started:.1f} s, log {log}")


async def _backfill(settings: Settings, minutes: int, console: Console) -> tuple[int, float]:
    """Produce ``minutes`` of history as fast as possible; returns (ticks, seconds spent producing)."""
    config = SimulationConfig(rate=HISTORY_TICKS_PER_S)
    start_ms = int(time.time() * 1000) - minutes * 60_000
    ticks = generate_ticks(config, minutes * 60 * HISTORY_TICKS_PER_S, start_ms)
    progress = Progress(TextColumn("backfill: producing history"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console)
    task = progress.add_task("backfill", total=len(ticks))
    started = time.monotonic()
    with progress:
        async with MT5Producer(settings, validate=False) as producer:
            for i, tick in enumerate(ticks, 1):
                await producer.send_tick(**tick)
                if i % 5000 == 0:
                    progress.update(task, completed=i)
            progress.update(task, completed=len(ticks))
    return len(ticks), time.monotonic() - started


async def _simulate(settings: Settings, config: SimulationConfig, console: Console) -> tuple[int, int, float]:
    progress = Progress(
        TextColumn("live: simulating MT5 ticks"), BarColumn(), TextColumn("{task.fields[ticks]:>9,} ticks"),
        TextColumn("{task.fields[rate]:>8,.0f}/s"), TextColumn("{task.fields[signals]:>5,} signals"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console,
    )
    task = progress.add_task("sim", total=config.duration_s, ticks=0, rate=0.0, signals=0)

    def on_progress(p: SimulationProgress) -> None:
        progress.update(task, completed=min(p.elapsed_s, config.duration_s), ticks=p.ticks, signals=p.signals, rate=p.rate)

    with Live(progress, console=console, refresh_per_second=8):
        async with MT5Producer(settings) as producer:
            report = await run_simulation(producer, config, on_progress)
            for value in MALFORMED:  # show the DLQ at work
                await producer.send_raw(TICKS_TOPIC, b"acme:demo:BROKEN", value)
    return report.ticks, report.signals, report.seconds


class _Derived(TypedDict):
    patterns: int
    with_forward: int
    neighbors: list[Neighbor]
    strategies: list[StrategyEdge]
    enriched: list[bytes]


async def _derived(settings: Settings) -> _Derived:
    """What the derived stores hold now (patterns, edges, enriched signals), for the summary."""
    connection = await asyncpg.connect(settings.postgres_connection_dsn)
    try:
        counts = await connection.fetchrow("SELECT count(*), count(forward_return) FROM patterns")
        assert counts is not None  # an aggregate without GROUP BY returns one row
        patterns, with_forward = counts
    finally:
        await connection.close()
    graph = FalkorGraphStore(settings.graph_connection_url)
    await graph.start()
    try:
        neighbors = await graph.neighbors("acme", "EURUSD", depth=1, min_weight=settings.correlation_threshold)
        strategies = await graph.strategies("acme", "EURUSD")
    finally:
        await graph.close()
    enriched = [record.value async for batch in scan_topic(settings.bootstrap_servers, ENRICHED_TOPIC) for record in batch]
    return {"patterns": patterns, "with_forward": with_forward, "neighbors": neighbors, "strategies": strategies,
            "enriched": enriched}


def run_demo(settings: Settings, *, duration_s: float, rate: float, history_minutes: int, console: Console) -> int:
    console.rule("[bold]tickwire demo")
    try:
        reports = stack.up(settings)
    except stack.StackError as exc:
        console.print(f"[red]the local stack did not start:[/red]\n{exc}")
        return 1
    for r in reports:
        console.print(f"{r.name:9} {r.address:48} {r.outcome}")
    settings = with_secrets(settings)  # the passwords `up` generated for the servers
    states = asyncio.run(apply_catalog(load_catalog(settings.topics_file), client_options(settings)))
    console.print("topics:  " + ", ".join(f"{s.name} ({s.action})" for s in states))
    _ensure_worker(settings, console)
    rows_before = _scalar(settings, ROWS_SQL)
    dlq_before = len(asyncio.run(read_dead_letters(settings.bootstrap_servers)))

    history, produce_s = asyncio.run(_backfill(settings, history_minutes, console))
    backfill_started = time.monotonic() - produce_s
    rows = _wait_rows(settings, rows_before + history, console, f"{history:,} history ticks")
    backfill_s = time.monotonic() - backfill_started
    if rows < rows_before + history:
        console.print(f"[red]only {rows - rows_before:,} of {history:,} history ticks stored; see {settings.state_dir}/logs/worker.log[/red]")
        return 1

    ticks, signals, sim_s = asyncio.run(_simulate(settings, SimulationConfig(rate=rate, duration_s=duration_s), console))
    live_stopped = time.monotonic()
    expected = rows_before + history + ticks
    rows = _wait_rows(settings, expected, console, "the live ticks")
    lag_s = time.monotonic() - live_stopped
    if rows < expected:
        console.print(f"[red]only {rows - rows_before:,} of {history + ticks:,} ticks stored; see {settings.state_dir}/logs/worker.log[/red]")
        return 1

    letters = asyncio.run(read_dead_letters(settings.bootstrap_servers))
    cache = redis.Redis.from_url(settings.cache_connection_url, decode_responses=True)
    hot_keys = sum(1 for _ in cache.scan_iter(match="tw:*:tick:*", count=1000))
    candles = worker_query(settings, "SELECT timeframe, count() AS bars FROM tickwire.candles FINAL GROUP BY timeframe ORDER BY timeframe") or []
    stored_signals = _scalar(settings, "SELECT count() FROM tickwire.signals FINAL")
    derived = asyncio.run(_derived(settings))

    summary = Table(title="what happened", show_header=False)
    summary.add_row("backfill", f"{history:,} ticks of the last {history_minutes} min stored in {backfill_s:.1f} s "
                    f"= {history / backfill_s:,.0f} ticks/s through the whole pipeline")
    summary.add_row("live", f"{ticks:,} ticks in {sim_s:.1f} s ({ticks / sim_s:,.0f}/s) and {signals:,} signals; "
                    f"all stored {lag_s:.2f} s after the simulator stopped")
    summary.add_row("rows in ClickHouse", f"{rows:,} ticks (one row per tick, FINAL), {stored_signals:,} signals")
    summary.add_row("candles", ", ".join(f"{orjson.loads(c)['bars']:,} × {orjson.loads(c)['timeframe']}" for c in candles))
    summary.add_row("hot keys in cache", f"{hot_keys:,}")
    summary.add_row("pattern vectors", f"{derived['patterns']:,} (pgvector), {derived['with_forward']:,} with a known forward return")
    summary.add_row("graph", f"acme EURUSD: {len(derived['neighbors'])} correlated symbols (|r| ≥ {settings.correlation_threshold}), "
                    f"{len(derived['strategies'])} strategies")
    summary.add_row("enriched signals", f"{len(derived['enriched']):,} on {ENRICHED_TOPIC}")
    summary.add_row("DLQ records", f"{len(letters):,} (this run {len(letters) - dlq_before}: malformed records sent on purpose)")
    console.print(summary)
    _show_examples(settings, cache, derived, console)
    show_api_examples(settings, console)
    return 0


def _show_examples(settings: Settings, cache: redis.Redis, derived: _Derived, console: Console) -> None:
    console.print("[bold]try it yourself[/bold] (the stack and the worker keep running; `make stop` stops them):")
    query = ("SELECT symbol, timeframe, start, open, high, low, close, ticks FROM tickwire.candles FINAL "
             "WHERE tenant = 'acme' AND symbol = 'EURUSD' ORDER BY start DESC LIMIT 3")
    console.print(f'  .venv/bin/tickwire sql "{query}"')
    for line in worker_query(settings, query) or []:
        console.print("    " + line, highlight=False)
    port = settings.cache_url.rsplit(":", 1)[1].split("/")[0]
    key = "tw:acme:tick:demo:EURUSD"
    console.print(f"  .venv/bin/python -c \"import redis; pw = open('.tickwire/secrets/tickwire_cache_password').read(); "
                  f"print(redis.Redis(port={port}, password=pw).hgetall('{key}'))\"", highlight=False)
    console.print(f"    {cache.hgetall(key)}", highlight=False)
    neighbors = ", ".join(f"{n.symbol} ({n.weight:+.2f})" for n in derived["neighbors"][:6]) or "none yet"
    console.print(f"  correlated with acme EURUSD on 1m: {neighbors}")
    strategies = ", ".join(f"{s.strategy} ({s.signals} signals, last {s.last_action})" for s in derived["strategies"]) or "none yet"
    console.print(f"  strategies trading acme EURUSD: {strategies}")
    if derived["enriched"]:
        console.print("  an enriched signal (signals.enriched.v1):")
        console.print("    " + derived["enriched"][-1].decode(), highlight=False)
    console.print("  .venv/bin/tickwire stack status")
