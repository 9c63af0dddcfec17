"""The ``tickwire`` command line."""

from __future__ import annotations

import asyncio
import sys

import click
from rich.console import Console
from rich.table import Table

from pipeline.cli.api import api, keys, tenants
from pipeline.cli.dlq import dlq
from pipeline.cli.produce import import_mt5, simulate
from pipeline.cli.replay import replay_command
from pipeline.cli.stack import stack
from pipeline.config import Settings, SettingsError, get_settings

console = Console()


def _settings() -> Settings:
    try:
        return get_settings()
    except SettingsError as exc:
        console.print(f"[red]{exc}[/red]")
        sys.exit(2)


class Commands(click.Group):
    """The command group; ``bench`` is imported only when asked for (the benchmarks are not part of an install)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), "bench"])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name != "bench":
            return super().get_command(ctx, name)
        try:
            from bench.cli import bench
        except ImportError as exc:
            return _missing_bench(str(exc))
        return bench


def _missing_bench(reason: str) -> click.Command:
    @click.command("bench", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    def bench() -> None:
        """Benchmarks (needs a source checkout with bench/ and `pip install -e '.[local,bench]'`)."""
        click.echo(f"tickwire bench needs the benchmarks of a source checkout ({reason}): run it from a clone "
                   "with `pip install -e '.[local,bench]'`", err=True)
        sys.exit(2)

    return bench


@click.group(cls=Commands)
def cli() -> None:
    """tickwire: MT5 ticks and signals -> ClickHouse, hot keys, vectors, graphs."""


@cli.group()
def topics() -> None:
    """The topic catalog (topics.yaml)."""


@topics.command("apply")
def topics_apply() -> None:
    """Create missing topics and report drift (never deletes or alters)."""
    from pipeline.contracts.catalog import CatalogError, apply_catalog, load_catalog
    from pipeline.core.kafka import client_options, diagnose

    settings = _settings()
    try:
        catalog = load_catalog(settings.topics_file)
        states = asyncio.run(apply_catalog(catalog, client_options(settings), settings.topic_replication_factor))
    except CatalogError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 - broker unreachable, refused login, untrusted certificate...
        click.echo(f"cannot apply topics: {asyncio.run(diagnose(exc, settings))}", err=True)
        sys.exit(1)
    table = Table("topic", "state", "detail")
    for state in states:
        colour = {"created": "green", "ok": "dim", "drift": "yellow"}[state.action]
        table.add_row(state.name, f"[{colour}]{state.action}[/{colour}]", state.detail)
    console.print(table)
    if any(s.action == "drift" for s in states):
        sys.exit(3)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--stages", help="Stages to run, comma separated (default TICKWIRE_STAGES: ingest,signals,patterns,graph).")
@click.pass_context
def worker(ctx: click.Context, stages: str | None) -> None:
    """Run the Faust worker (extra arguments go to Faust, e.g. ``-l info``)."""
    from pipeline.config import SettingsError, load_settings

    settings = _settings()
    if stages is not None:
        try:
            settings = load_settings(**{**settings.model_dump(), "stages": stages})
        except SettingsError as exc:
            console.print(f"[red]{exc}[/red]")
            sys.exit(2)
    from pipeline.runtime.worker import run

    run(settings, list(ctx.args) or ["-l", "info"])


@cli.command()
@click.argument("query")
@click.option("--write", is_flag=True, help="Allow writes (maintenance: DDL, OPTIMIZE, DETACH/ATTACH).")
def sql(query: str, write: bool) -> None:
    """Run a query on the analytics store (read-only unless --write); prints JSON lines."""
    from pipeline.ops.sql_client import SqlError, run_sql

    settings = _settings()
    try:
        for line in run_sql(settings, query, write=write):
            click.echo(line)
    except SqlError as exc:
        console.print(f"[red]{exc}[/red]")
        sys.exit(1)


@cli.command()
@click.option("--duration", default=30.0, show_default=True, help="Seconds of simulated ticks.")
@click.option("--rate", default=5000.0, show_default=True, help="Live ticks per second.")
@click.option("--history", default=90, show_default=True, help="Minutes of history to backfill first.")
def demo(duration: float, rate: float, history: int) -> None:
    """Start the local stack and a worker, backfill and simulate MT5 ticks, show what happened."""
    from pipeline.devstack.demo import run_demo

    sys.exit(run_demo(_settings(), duration_s=duration, rate=rate, history_minutes=history, console=console))


cli.add_command(stack)
cli.add_command(simulate)
cli.add_command(import_mt5)
cli.add_command(replay_command)
cli.add_command(dlq)
cli.add_command(tenants)
cli.add_command(keys)
cli.add_command(api)


def main() -> None:
    cli()
