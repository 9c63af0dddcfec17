"""``tickwire simulate`` and ``tickwire import-mt5``: produce ticks to the broker with a live progress display.

Exit codes: 0 done; 1 the broker failed (unreachable, rejected records) or an
import found no tick at all; 2 bad options, settings or input file; 130
interrupted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click
from aiokafka.errors import KafkaError
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pipeline.cli.console import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, err_console, out, say
from pipeline.cli.console import settings as cli_settings
from pipeline.config import Settings
from pipeline.core.kafka import KafkaSetupError
from pipeline.ingest import mt5_import
from pipeline.ingest.producer import DeliveryError, MT5Producer, utc_offset_ms
from pipeline.ingest.simulator import (
    DEFAULT_SYMBOLS,
    MAX_TICKS_PER_KEY_PER_S,
    SimulationConfig,
    SimulationProgress,
    SimulationReport,
    run_simulation,
)

T = TypeVar("T")

#: How many skipped lines the import summary lists (the report keeps more).
SHOWN_SKIPS = 10


def _say(message: str) -> None:
    """A summary line on stdout, as is (no markup, no wrapping)."""
    out(message + "\n")


def _fail(message: str, code: int) -> click.exceptions.Exit:
    """Print ``message`` to stderr as one line; the exception to raise to exit with ``code``."""
    say(message)
    return click.exceptions.Exit(code)


def _settings() -> Settings:
    return cli_settings()


def _names(value: str) -> list[str]:
    """A comma-separated option as a list (blanks dropped)."""
    return [name.strip() for name in value.split(",") if name.strip()]


def _produce(settings: Settings, work: Callable[[MT5Producer], Awaitable[T]]) -> T:
    """Run ``work`` with a started producer; broker trouble and Ctrl-C become clean exits."""

    async def main() -> T:
        async with MT5Producer(settings) as producer:
            return await work(producer)

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        raise _fail("interrupted; what was sent before may or may not have reached the broker", EXIT_INTERRUPTED) from None
    except KafkaSetupError as exc:  # could not connect: the line names the setting to check
        raise _fail(str(exc), EXIT_FAILURE) from None
    except (KafkaError, DeliveryError) as exc:
        raise _fail(f"the broker at TICKWIRE_BROKER_URL={settings.broker_url} failed: {type(exc).__name__}: {exc}",
                    EXIT_FAILURE) from None


def _progress(*columns: TextColumn) -> Progress:
    """A progress display on stderr (stdout has the summary); nothing when stderr is not a terminal."""
    console = err_console()
    return Progress(TextColumn("{task.description}"), BarColumn(bar_width=24), *columns, TimeElapsedColumn(),
                    TimeRemainingColumn(), console=console, disable=not console.is_terminal)


@click.command()
@click.option("--rate", default=5000.0, show_default=True, help="Ticks per second, over all keys.")
@click.option("--duration", default=30.0, show_default=True, help="Seconds to run.")
@click.option("--tenants", default="acme,globex", show_default=True, help="Comma-separated tenants.")
@click.option("--brokers", default="demo", show_default=True, help="Comma-separated brokers.")
@click.option("--symbols", default=",".join(DEFAULT_SYMBOLS), show_default=True, help="Comma-separated symbols.")
@click.option("--seed", default=7, show_default=True, help="Random seed (same seed, same market).")
@click.option("--signal-rate", default=2.0, show_default=True, help="Signals per second, over all keys.")
def simulate(rate: float, duration: float, tenants: str, brokers: str, symbols: str, seed: int,
             signal_rate: float) -> None:
    """Produce live MT5-like ticks and signals for every tenant x broker x symbol."""
    try:
        config = SimulationConfig(tenants=_names(tenants), brokers=_names(brokers), symbols=_names(symbols),
                                  rate=rate, duration_s=duration, seed=seed, signal_rate=signal_rate)
    except ValueError as exc:
        raise _fail(f"invalid option: {exc}", EXIT_USAGE) from None
    settings = _settings()
    if config.ticks_per_key_per_s > MAX_TICKS_PER_KEY_PER_S:
        say(f"note: {config.ticks_per_key_per_s:,.0f} ticks/s per key; tick times "
            f"(whole ms, increasing per key) will run ahead of the clock")
    report = _produce(settings, lambda producer: _simulate(producer, config))
    _say(f"simulated {report.ticks:,} ticks and {report.signals:,} signals for {len(config.keys)} keys "
         f"in {report.seconds:.1f} s ({report.rate:,.0f} ticks/s) to {settings.broker_url}")


async def _simulate(producer: MT5Producer, config: SimulationConfig) -> SimulationReport:
    progress = _progress(TextColumn("{task.fields[ticks]:>11,} ticks"), TextColumn("{task.fields[rate]:>8,.0f}/s"),
                         TextColumn("{task.fields[signals]:>6,} signals"))
    task = progress.add_task("simulating", total=config.duration_s, ticks=0, rate=0.0, signals=0)

    def on_progress(p: SimulationProgress) -> None:
        progress.update(task, completed=min(p.elapsed_s, config.duration_s), ticks=p.ticks, rate=p.rate,
                        signals=p.signals)

    with progress:
        return await run_simulation(producer, config, on_progress)


@click.command("import-mt5")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tenant", required=True, help="Tenant that owns the ticks.")
@click.option("--broker", required=True, help="Broker (MT5 server) the ticks come from.")
@click.option("--symbol", required=True, help="Symbol of the ticks (MT5 exports one symbol per file).")
@click.option("--utc-offset", default=0.0, show_default=True,
              help="Hours the broker's server time is ahead of UTC (e.g. 2 for UTC+2).")
def import_mt5(file: Path, tenant: str, broker: str, symbol: str, utc_offset: float) -> None:
    """Produce the ticks of an MT5 tick export FILE (Symbols -> Ticks -> Export)."""
    try:
        mt5_import.check_key(tenant, broker, symbol)
        utc_offset_ms(utc_offset)
    except ValueError as exc:
        raise _fail(f"invalid option: {exc}", EXIT_USAGE) from None
    try:
        mt5_import.MT5TickReader(file).close()  # a file that is no tick export fails before connecting
    except (mt5_import.MT5FileError, OSError) as exc:
        raise _fail(f"{file}: {exc}", EXIT_USAGE) from None
    settings = _settings()
    report = _produce(settings, lambda producer: _import(producer, file, tenant, broker, symbol, utc_offset))
    _say(f"imported {report.ticks:,} ticks of {tenant}:{broker}:{symbol} from {file} ({report.encoding}) "
         f"in {report.seconds:.1f} s ({report.rate:,.0f} ticks/s); skipped {report.skipped:,} lines")
    for skip in report.skipped_lines[:SHOWN_SKIPS]:
        _say(f"  line {skip.line}: {skip.reason}")
    if report.skipped > SHOWN_SKIPS:
        _say(f"  ... and {report.skipped - SHOWN_SKIPS:,} more")
    if report.ticks == 0:
        raise _fail("no tick was imported", EXIT_FAILURE)


async def _import(producer: MT5Producer, file: Path, tenant: str, broker: str, symbol: str,
                  utc_offset: float) -> mt5_import.ImportReport:
    progress = _progress(TextColumn("{task.fields[ticks]:>11,} ticks"), TextColumn("{task.fields[rate]:>8,.0f}/s"),
                         TextColumn("{task.fields[skipped]:>6,} skipped"))
    task = progress.add_task(f"importing {file.name}", total=1.0, ticks=0, rate=0.0, skipped=0)

    def on_progress(p: mt5_import.ImportProgress) -> None:
        progress.update(task, completed=p.fraction, ticks=p.ticks, skipped=p.skipped,
                        rate=p.ticks / p.elapsed_s if p.elapsed_s else 0.0)

    with progress:
        return await mt5_import.import_mt5(producer, file, tenant=tenant, broker=broker, symbol=symbol,
                                           utc_offset_hours=utc_offset, on_progress=on_progress)
