"""``tickwire stack``: start, stop and inspect the local stack.

Exit codes: 0 success; 1 a server failed to start (``up``/``start``) or is not
answering (``status``); 2 invalid settings.
"""

from __future__ import annotations

from collections.abc import Callable

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pipeline.config import Settings, SettingsError, get_settings
from pipeline.devstack.control import (
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    StackStartError,
    StartReport,
    StopReport,
    down,
    start_server,
    status,
    stop_server,
    up,
)
from pipeline.devstack.errors import StackConfigError, StackError
from pipeline.devstack.servers import SERVER_NAMES
from pipeline.devstack.worker_process import stop_background_worker

console = Console()
err_console = Console(stderr=True)


def _settings() -> Settings:
    try:
        return get_settings()
    except SettingsError as exc:
        err_console.print(Text(str(exc)), style="red")
        raise click.exceptions.Exit(2) from None


def _fail(exc: StackError) -> None:
    err_console.print(Text(str(exc)), style="red")
    raise click.exceptions.Exit(2 if isinstance(exc, StackConfigError) else 1)


def _print_starts(reports: list[StartReport]) -> None:
    table = Table("server", "address", "result", "pid", "took")
    styles = {"started": "green", "already running": "cyan", "failed": "bold red"}
    for r in reports:
        result = Text(r.outcome, style=styles[r.outcome])
        table.add_row(r.name, r.address, result, str(r.pid or "-"), f"{r.seconds:.2f} s")
    console.print(table)


def _run_start(action: Callable[[], list[StartReport]]) -> None:
    try:
        reports = action()
    except StackStartError as exc:
        _print_starts(exc.reports)
        err_console.print(Text(str(exc)))
        raise click.exceptions.Exit(1) from None
    except StackError as exc:
        _fail(exc)
    else:
        _print_starts(reports)


def _print_stops(reports: list[StopReport]) -> None:
    table = Table("server", "result", "pid")
    for r in reports:
        result = "not running" if r.pid is None else ("killed (did not stop in time)" if r.killed else "stopped")
        table.add_row(r.name, result, str(r.pid or "-"))
    console.print(table)


@click.group()
def stack() -> None:
    """The pip-only local stack (tansu, Valkey, PostgreSQL + pgvector, FalkorDB) on loopback."""


@stack.command("up")
@click.option("--timeout", type=float, default=START_TIMEOUT_S, show_default=True, help="Seconds to wait for each server.")
def up_cmd(timeout: float) -> None:
    """Start every server that is not already answering, and wait until each answers."""
    settings = _settings()
    _run_start(lambda: up(settings, timeout))


@stack.command("start")
@click.argument("name", type=click.Choice(SERVER_NAMES))
@click.option("--timeout", type=float, default=START_TIMEOUT_S, show_default=True)
def start_cmd(name: str, timeout: float) -> None:
    """Start one server."""
    settings = _settings()
    _run_start(lambda: [start_server(settings, name, timeout)])


@stack.command("down")
@click.option("--timeout", type=float, default=STOP_TIMEOUT_S, show_default=True, help="Seconds before SIGKILL.")
def down_cmd(timeout: float) -> None:
    """Stop the background worker (if any), then every server started from this state directory."""
    settings = _settings()
    pid = stop_background_worker(settings)
    if pid is not None:
        console.print(f"worker    stopped (pid {pid})")
    try:
        _print_stops(down(settings, timeout))
    except StackError as exc:
        _fail(exc)


@stack.command("stop")
@click.argument("name", type=click.Choice(SERVER_NAMES))
@click.option("--timeout", type=float, default=STOP_TIMEOUT_S, show_default=True)
def stop_cmd(name: str, timeout: float) -> None:
    """Stop one server."""
    settings = _settings()
    try:
        _print_stops([stop_server(settings, name, timeout)])
    except StackError as exc:
        _fail(exc)


@stack.command("status")
def status_cmd() -> None:
    """Show each server: address, pid, running, answering, probe latency. Exit 1 unless all answer."""
    settings = _settings()
    try:
        rows = status(settings)
    except StackError as exc:
        _fail(exc)
        return
    table = Table("server", "address", "pid", "running", "answering", "latency")
    notes = []
    for s in rows:
        running = Text("yes", style="green") if s.running else Text("no", style="dim")
        answering = Text("yes", style="green") if s.answering else Text("no", style="red")
        latency = f"{s.latency_ms:.1f} ms" if s.latency_ms is not None else "-"
        table.add_row(s.name, s.address, str(s.pid or "-"), running, answering, latency)
        if s.external:
            notes.append(f"{s.name}: answering, but not started from this state dir (no pid file)")
        elif s.error:
            notes.append(f"{s.name}: {s.error}")
    console.print(table)
    for note in notes:
        console.print(Text(note, style="dim"))
    console.print(Text(f"state dir: {settings.state_dir.expanduser().resolve()}", style="dim"))
    if not all(s.answering for s in rows):
        raise click.exceptions.Exit(1)
