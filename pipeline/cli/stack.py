"""``tickwire stack``: start, stop and inspect the local stack.

Exit codes: 0 success; 1 a server failed to start (``up``/``start``) or is not
answering (``status``); 2 invalid settings.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

import click
from rich.progress import Progress, ProgressColumn, SpinnerColumn, Task, TextColumn
from rich.table import Table
from rich.text import Text

from pipeline.cli.console import (
    EXIT_FAILURE,
    EXIT_USAGE,
    err_console,
    fail,
    out_json_lines,
    print_table,
    say,
    terminal_text,
)
from pipeline.cli.console import settings as cli_settings
from pipeline.config import Settings
from pipeline.devstack.control import (
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    OnProgress,
    StackStartError,
    StartProgress,
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

EXIT_CODES = """\b
Exit codes: 0 success; 1 a server failed to start (up, start) or is not
answering (status); 2 invalid settings (e.g. an address the local stack
cannot serve)."""
JSON_HELP = "One JSON object per line and server instead of the table."


def _settings() -> Settings:
    return cli_settings()


def _fail(exc: StackError) -> None:
    fail(str(exc), EXIT_USAGE if isinstance(exc, StackConfigError) else EXIT_FAILURE)


def _start_json(r: StartReport) -> dict[str, Any]:
    return {"server": r.name, "address": r.address, "result": r.outcome, "pid": r.pid, "seconds": round(r.seconds, 3),
            "reason": r.reason, "log_file": str(r.log_file) if r.log_file else None}


def _print_starts(reports: list[StartReport], as_json: bool) -> None:
    if as_json:
        out_json_lines(_start_json(r) for r in reports)
        return
    table = Table("server", "address", "result", "pid", "took")
    styles = {"started": "green", "already running": "cyan", "failed": "bold red"}
    for r in reports:
        result = Text(r.outcome, style=styles[r.outcome])
        table.add_row(r.name, r.address, result, str(r.pid or "-"), f"{r.seconds:.2f} s")
    print_table(table)


_STEPS = {"checking": "checking…", "starting": "starting…", "waiting": "waiting for an answer…",
          "setting up": "answered; setting up…"}


def _done_text(report: StartReport) -> Text:
    if report.outcome == "started":
        return Text(f"started, answered in {report.seconds:.1f} s", style="green")
    if report.outcome == "already running":
        return Text("already running", style="cyan")
    return Text(f"failed after {report.seconds:.1f} s: {report.reason}", style="bold red")


class _StepColumn(ProgressColumn):
    """The step a server is at, or how it ended (the task's ``line`` field, a :class:`Text`: no markup)."""

    def render(self, task: Task) -> Text:
        line = task.fields.get("line")
        return line if isinstance(line, Text) else Text(task.description)


def _with_progress(names: tuple[str, ...], action: Callable[[OnProgress], list[StartReport]]) -> list[StartReport]:
    """Run ``action`` with a line per server on stderr showing its step while it waits, then how it ended
    (on a terminal, and gone once all are done: the result table says it all; elsewhere nothing)."""
    console = err_console()
    if not console.is_terminal:
        return action(lambda _: None)
    progress = Progress(SpinnerColumn(finished_text="•"), TextColumn("{task.fields[server]:<9}"),
                        _StepColumn(), console=console, transient=True)
    tasks = {name: progress.add_task("waiting for the others…", total=1, server=name) for name in names}
    lock = threading.Lock()

    def on_progress(p: StartProgress) -> None:  # called from the thread that starts the server
        with lock:
            if p.name not in tasks:
                tasks[p.name] = progress.add_task(_STEPS["checking"], total=1, server=p.name)
            if p.report is not None:
                progress.update(tasks[p.name], line=_done_text(p.report), completed=1)
            else:
                progress.update(tasks[p.name], description=_STEPS[p.step])

    with progress:
        return action(on_progress)


def _run_start(names: tuple[str, ...], action: Callable[[OnProgress], list[StartReport]], as_json: bool) -> None:
    try:
        reports = _with_progress(names, action)
    except StackStartError as exc:
        _print_starts(exc.reports, as_json)
        failed = [r for r in exc.reports if not r.ok]
        say(f"{len(failed)} of {len(exc.reports)} servers failed to start: "
            + "; ".join(f"{r.name} ({r.address}): {r.reason}" for r in failed)
            + f" (see {', '.join(str(r.log_file) for r in failed if r.log_file)})")
        for line in str(exc).splitlines():  # the tail of each failed server's log
            if line.startswith("  "):
                click.echo(terminal_text(line.encode(), one_line=True), err=True)
        sys.exit(EXIT_FAILURE)
    except StackError as exc:
        _fail(exc)
    else:
        _print_starts(reports, as_json)


def _print_stops(reports: list[StopReport], as_json: bool) -> None:
    if as_json:
        out_json_lines({"server": r.name, "result": "not running" if r.pid is None else ("killed" if r.killed else "stopped"),
                        "pid": r.pid} for r in reports)
        return
    table = Table("server", "result", "pid")
    for r in reports:
        result = "not running" if r.pid is None else ("killed (did not stop in time)" if r.killed else "stopped")
        table.add_row(r.name, result, str(r.pid or "-"))
    print_table(table)


@click.group(epilog=EXIT_CODES)
def stack() -> None:
    """The pip-only local stack (tansu, Valkey, PostgreSQL + pgvector, FalkorDB) on loopback."""


@stack.command("up", epilog=EXIT_CODES)
@click.option("--timeout", type=float, default=START_TIMEOUT_S, show_default=True, help="Seconds to wait for each server.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def up_cmd(timeout: float, as_json: bool) -> None:
    """Start every server that is not already answering, and wait until each answers (progress per server on a
    terminal's stderr; the result table on stdout)."""
    settings = _settings()
    _run_start(tuple(SERVER_NAMES), lambda on_progress: up(settings, timeout, on_progress=on_progress), as_json)


@stack.command("start", epilog=EXIT_CODES)
@click.argument("name", type=click.Choice(SERVER_NAMES))
@click.option("--timeout", type=float, default=START_TIMEOUT_S, show_default=True)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def start_cmd(name: str, timeout: float, as_json: bool) -> None:
    """Start one server."""
    settings = _settings()
    _run_start((name,), lambda on_progress: [start_server(settings, name, timeout, on_progress=on_progress)], as_json)


@stack.command("down", epilog=EXIT_CODES)
@click.option("--timeout", type=float, default=STOP_TIMEOUT_S, show_default=True, help="Seconds before SIGKILL.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def down_cmd(timeout: float, as_json: bool) -> None:
    """Stop the background worker (if any), then every server started from this state directory."""
    settings = _settings()
    pid = stop_background_worker(settings)
    if pid is not None:
        say(f"worker    stopped (pid {pid})")
    try:
        _print_stops(down(settings, timeout), as_json)
    except StackError as exc:
        _fail(exc)


@stack.command("stop", epilog=EXIT_CODES)
@click.argument("name", type=click.Choice(SERVER_NAMES))
@click.option("--timeout", type=float, default=STOP_TIMEOUT_S, show_default=True)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def stop_cmd(name: str, timeout: float, as_json: bool) -> None:
    """Stop one server."""
    settings = _settings()
    try:
        _print_stops([stop_server(settings, name, timeout)], as_json)
    except StackError as exc:
        _fail(exc)


@stack.command("status", epilog=EXIT_CODES)
@click.option("--json", "as_json", is_flag=True,
              help='One JSON object per line and server: {"server", "address", "pid", "running", "answering", '
                   '"latency_ms", "external", "error"}.')
def status_cmd(as_json: bool) -> None:
    """Show each server: address, pid, running, answering, probe latency. Exit 1 unless all answer."""
    settings = _settings()
    try:
        rows = status(settings)
    except StackError as exc:
        _fail(exc)
        return
    if as_json:
        out_json_lines({"server": s.name, "address": s.address, "pid": s.pid, "running": s.running,
                        "answering": s.answering, "latency_ms": None if s.latency_ms is None else round(s.latency_ms, 3),
                        "external": s.external, "error": s.error} for s in rows)
    else:
        table = Table("server", "address", "pid", "running", "answering", "latency",
                      caption=f"state dir: {settings.state_dir.expanduser().resolve()}", caption_justify="left")
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
        print_table(table)
        for note in notes:
            say(note)
    if not all(s.answering for s in rows):
        sys.exit(EXIT_FAILURE)
