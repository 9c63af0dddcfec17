"""The ``tickwire`` command line: the group, its options (``--debug``, ``--version``) and the entry point."""

from __future__ import annotations

import asyncio
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import NoReturn

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pipeline.cli import console as cli_console
from pipeline.cli.api import api, keys, tenants
from pipeline.cli.console import (
    EXIT_CODES,
    EXIT_DRIFT,
    EXIT_FAILURE,
    EXIT_USAGE,
    chdb_held,
    fail,
    out_json_lines,
    print_table,
)
from pipeline.cli.dlq import dlq
from pipeline.cli.produce import import_mt5, simulate
from pipeline.cli.replay import replay_command
from pipeline.cli.show_config import config_command
from pipeline.cli.stack import stack
from pipeline.cli.status import status_command, top_command

#: Long-running services that set up logging of their own (Faust's worker; the API's access log).
SERVICES = ("worker", "api", "bench")


def package_version() -> str:
    """The installed tickwire's version (``unknown`` when run from a checkout that is not installed)."""
    try:
        return version("tickwire")
    except PackageNotFoundError:
        return "unknown"


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
        """Benchmarks (needs a source checkout with bench/ and `pip install -e '.[worker,local,bench]'`)."""
        click.echo(f"tickwire bench needs the benchmarks of a source checkout ({reason}): run it from a clone "
                   "with `pip install -e '.[worker,local,bench]'`", err=True)
        sys.exit(2)

    return bench


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(f"tickwire {package_version()} (Python {platform.python_version()})")
    ctx.exit()


@click.group(cls=Commands, epilog=EXIT_CODES)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_show_version,
              help="Show the installed tickwire's version and Python's, and exit.")
@click.option("--debug", is_flag=True, help="Show the traceback of an error, and the logs of libraries (aiokafka, ...).")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """tickwire: MT5 ticks and signals -> ClickHouse, hot keys, vectors, graphs."""
    cli_console.set_debug(debug)
    if ctx.invoked_subcommand not in SERVICES:
        cli_console.configure_logging(debug)


@cli.group(epilog=EXIT_CODES)
def topics() -> None:
    """The topic catalog (topics.yaml)."""


@topics.command("apply", epilog="""\b
Exit codes: 0 every topic exists as declared; 1 the broker cannot be reached
or refused; 2 invalid settings or catalog; 3 drift (a topic differs from the
catalog: reported, never altered).""")
@click.option("--json", "as_json", is_flag=True,
              help='One JSON object per line and topic: {"topic", "state": "created"|"ok"|"drift", "detail"}.')
def topics_apply(as_json: bool) -> None:
    """Create missing topics and report drift (never deletes or alters)."""
    from pipeline.contracts.catalog import CatalogError, apply_catalog, load_catalog
    from pipeline.core.kafka import client_options, diagnose

    settings = cli_console.settings()
    try:
        catalog = load_catalog(settings.topics_file)
    except CatalogError as exc:
        fail(str(exc), EXIT_USAGE)
    try:
        states = asyncio.run(apply_catalog(catalog, client_options(settings), settings.topic_replication_factor))
    except Exception as exc:  # noqa: BLE001 - broker unreachable, refused login, untrusted certificate...
        fail(f"cannot apply topics: {asyncio.run(diagnose(exc, settings))}", EXIT_FAILURE)
    if as_json:
        out_json_lines({"topic": s.name, "state": s.action, "detail": s.detail} for s in states)
    else:
        table = Table("topic", "state", "detail")
        for state in states:
            colour = {"created": "green", "ok": "dim", "drift": "yellow"}[state.action]
            table.add_row(Text(state.name), Text(state.action, style=colour), Text(state.detail))
        print_table(table)
    if any(s.action == "drift" for s in states):
        sys.exit(EXIT_DRIFT)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True}, epilog="""\b
Exit codes: 0 stopped cleanly; 1 failed; 2 invalid settings or --stages.""")
@click.option("--stages", help="Stages to run, comma separated (default TICKWIRE_STAGES: ingest,signals,patterns,graph,outcomes).")
@click.pass_context
def worker(ctx: click.Context, stages: str | None) -> None:
    """Run the Faust worker (extra arguments go to Faust, e.g. ``-l info``)."""
    from pipeline.config import SettingsError, load_settings

    settings = cli_console.settings()
    if stages is not None:
        try:
            settings = load_settings(**{**settings.model_dump(), "stages": stages})
        except SettingsError as exc:
            fail(str(exc), EXIT_USAGE)
    from pipeline.runtime.worker import run

    run(settings, list(ctx.args))


@cli.command(epilog="""\b
Output: one JSON object per row and line on stdout; errors (a refused or
failed query) on stderr only.
Exit codes: 0 ok; 1 the query failed, or no process can run it (chDB held by
another process and no worker answering); 2 invalid settings.""")
@click.argument("query")
@click.option("--write", is_flag=True, help="Allow writes (maintenance: DDL, OPTIMIZE, DETACH/ATTACH).")
def sql(query: str, write: bool) -> None:
    """Run a query on the analytics store (read-only unless --write); prints JSON lines."""
    from pipeline.ops.sql_client import SqlError, run_sql, worker_query

    settings = cli_console.settings()
    try:
        if settings.chdb_path is not None and chdb_held(settings.chdb_path):
            # only the process that holds the data can run it: its worker, or nobody
            lines = worker_query(settings, query, write=write)
            if lines is None:
                fail(f"the chDB data at {settings.chdb_path} is held by another process, and no worker answered at "
                     f"{settings.api_url} with the operator token of TICKWIRE_STATE_DIR={settings.state_dir}: stop that "
                     "process, or set TICKWIRE_API_PORT and TICKWIRE_STATE_DIR to those of the worker that holds it",
                     EXIT_FAILURE)
        else:
            lines = list(run_sql(settings, query, write=write))
    except SqlError as exc:
        fail(str(exc), EXIT_FAILURE)
    cli_console.out("".join(line + "\n" for line in lines))


@cli.command(epilog=EXIT_CODES)
@click.option("--duration", default=30.0, show_default=True, help="Seconds of simulated ticks.")
@click.option("--rate", default=5000.0, show_default=True, help="Live ticks per second.")
@click.option("--history", default=90, show_default=True, help="Minutes of history to backfill first.")
def demo(duration: float, rate: float, history: int) -> None:
    """Start the local stack and a worker, backfill and simulate MT5 ticks, show what happened."""
    from pipeline.devstack.demo import run_demo

    settings = cli_console.settings()
    sys.exit(run_demo(settings, duration_s=duration, rate=rate, history_minutes=history, console=Console()))


cli.add_command(stack)
cli.add_command(simulate)
cli.add_command(import_mt5)
cli.add_command(replay_command)
cli.add_command(dlq)
cli.add_command(tenants)
cli.add_command(keys)
cli.add_command(api)
cli.add_command(config_command)
cli.add_command(status_command)
cli.add_command(top_command)


def _document_exit_codes(group: click.Group) -> None:
    """Every command's help ends with the exit codes (unless it documents its own)."""
    for command in group.commands.values():
        if command.epilog is None and "Exit codes" not in (command.help or ""):
            command.epilog = EXIT_CODES
        if isinstance(command, click.Group):
            _document_exit_codes(command)


_document_exit_codes(cli)


def main() -> NoReturn:
    """The ``tickwire`` command (every exception becomes one line on stderr and an exit code)."""
    sys.exit(cli_console.run(cli))
