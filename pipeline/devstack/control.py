"""Start, stop and inspect the local stack.

Contracts:
- :func:`up` / :func:`start_server` start whatever is not already answering, in
  parallel, and wait (with a deadline per server, polling its readiness probe)
  until it answers. A server that exits, or does not answer in time, is
  reported with the reason and the tail of its log and a
  :class:`StackStartError` is raised; a process we started for it is stopped.
  Calling them again while everything answers changes nothing.
- A server that answers at its address but was not started from this state
  directory is left alone and reported as already running, with no pid.
- :func:`down` / :func:`stop_server` stop only processes recorded in this state
  directory's pid files (signal, deadline, then SIGKILL) and remove the pid files.
- :func:`status` never starts or stops anything.
- ``on_progress`` (optional, for a display) is told each server's steps while
  :func:`up` / :func:`start_server` work on it (:class:`StartProgress`), from
  the thread working on that server.
- Calls on the same state directory are serialised with a file lock.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from pipeline.config import Settings
from pipeline.devstack import process
from pipeline.devstack.errors import StackError
from pipeline.devstack.layout import StateLayout
from pipeline.devstack.servers import SERVER_NAMES, Server, servers_for

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
PROBE_TIMEOUT_S = 2.0
WAIT_PROBE_TIMEOUT_S = 0.5  # per attempt while waiting: a silent listener must not hide an exit for long
LOG_TAIL_LINES = 20

T = TypeVar("T")


@dataclass(frozen=True)
class ServerStatus:
    """What :func:`status` saw. ``pid`` is set only for a live process recorded in our pid file."""

    name: str
    address: str
    pid: int | None
    running: bool
    answering: bool
    latency_ms: float | None
    error: str | None = None

    @property
    def external(self) -> bool:
        """Answering, but not a process of this state directory."""
        return self.answering and not self.running


@dataclass(frozen=True)
class StartReport:
    """The outcome of starting one server."""

    name: str
    address: str
    outcome: Literal["started", "already running", "failed"]
    pid: int | None
    seconds: float
    reason: str | None = None
    log_file: Path | None = None
    log_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome != "failed"


@dataclass(frozen=True)
class StopReport:
    """The outcome of stopping one server: ``pid`` is None when nothing of ours was running."""

    name: str
    pid: int | None
    killed: bool = False


@dataclass(frozen=True)
class StartProgress:
    """A step of starting one server, as ``on_progress`` is told it: ``checking`` (is something answering
    already?), ``starting`` (launching its process), ``waiting`` (for it to answer), ``setting up`` (it
    answered: users, databases...), then ``done`` with the server's :class:`StartReport`. ``seconds``: since
    the work on this server began."""

    name: str
    address: str
    step: Literal["checking", "starting", "waiting", "setting up", "done"]
    seconds: float
    report: StartReport | None = None


OnProgress = Callable[[StartProgress], None]


class StackStartError(StackError):
    """At least one server did not start; ``reports`` has every server's outcome."""

    def __init__(self, reports: list[StartReport]) -> None:
        self.reports = reports
        parts = []
        for r in reports:
            if not r.ok:
                parts.append(f"{r.name} ({r.address}) failed: {r.reason}")
                if r.log_tail:
                    parts.append(f"  last lines of {r.log_file}:")
                    parts.extend("    " + line for line in r.log_tail.splitlines())
        super().__init__("\n".join(parts))


# public API ----------------------------------------------------------------


def up(settings: Settings, timeout: float = START_TIMEOUT_S, *, on_progress: OnProgress | None = None) -> list[StartReport]:
    """Start every server that is not answering; raise :class:`StackStartError` if any fails."""
    return _start(settings, SERVER_NAMES, timeout, on_progress)


def start_server(settings: Settings, name: str, timeout: float = START_TIMEOUT_S, *,
                 on_progress: OnProgress | None = None) -> StartReport:
    """Start one server by name (see :data:`SERVER_NAMES`), as :func:`up` does."""
    return _start(settings, (_known(name),), timeout, on_progress)[0]


def down(settings: Settings, timeout: float = STOP_TIMEOUT_S) -> list[StopReport]:
    """Stop every server of this state directory; harmless when nothing runs."""
    return _stop(settings, SERVER_NAMES, timeout)


def stop_server(settings: Settings, name: str, timeout: float = STOP_TIMEOUT_S) -> StopReport:
    """Stop one server by name, as :func:`down` does."""
    return _stop(settings, (_known(name),), timeout)[0]


def status(settings: Settings, timeout: float = PROBE_TIMEOUT_S) -> list[ServerStatus]:
    """Each server's pid, whether it runs, whether it answers, and the probe's latency."""
    layout = StateLayout.at(settings.state_dir)
    servers = servers_for(settings)
    return _in_parallel(lambda s: _status(s, layout, timeout), [servers[n] for n in SERVER_NAMES])


# internals -------------------------------------------------------------------


def _known(name: str) -> str:
    if name not in SERVER_NAMES:
        raise StackError(f"unknown server {name!r}; the stack has {', '.join(SERVER_NAMES)}")
    return name


def _in_parallel(fn: Callable[[Server], T], servers: list[Server]) -> list[T]:
    """Run ``fn`` for each server in its own thread (probes need a thread without an event loop)."""
    with ThreadPoolExecutor(max_workers=len(servers), thread_name_prefix="tickwire-stack") as pool:
        return list(pool.map(fn, servers))


@contextmanager
def _locked(layout: StateLayout) -> Iterator[None]:
    lock_file = layout.root / "run" / "stack.lock"
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, StackError):
        return str(exc)  # already written for a user
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _probe(server: Server, timeout: float) -> tuple[float | None, str | None]:
    """(latency in ms, None) when the server answered, else (None, why not)."""
    began = time.perf_counter()
    try:
        server.probe(timeout)
    except Exception as exc:  # any failure of a probe means "not answering"
        return None, _describe(exc)
    return (time.perf_counter() - began) * 1000, None


def _status(server: Server, layout: StateLayout, timeout: float) -> ServerStatus:
    pid = process.alive_pid(layout.pid_file(server.name), server.process_name)
    latency, error = _probe(server, timeout)
    return ServerStatus(server.name, server.address, pid, pid is not None, latency is not None, latency, error)


def _start(settings: Settings, names: tuple[str, ...], timeout: float, on_progress: OnProgress | None = None) -> list[StartReport]:
    layout = StateLayout.at(settings.state_dir)
    servers = servers_for(settings, generate_secrets=True)
    with _locked(layout):
        reports = _in_parallel(lambda s: _ensure_running(s, layout, timeout, on_progress), [servers[n] for n in names])
    if not all(r.ok for r in reports):
        raise StackStartError(reports)
    return reports


def _ensure_running(server: Server, layout: StateLayout, timeout: float, on_progress: OnProgress | None = None) -> StartReport:
    began = time.monotonic()
    deadline = began + timeout
    pid_file, log_file = layout.pid_file(server.name), layout.log_file(server.name)
    layout.create(server.name)

    def step(name: Literal["checking", "starting", "waiting", "setting up", "done"], done: StartReport | None = None) -> None:
        if on_progress is not None:
            on_progress(StartProgress(server.name, server.address, name, time.monotonic() - began, done))

    def report(outcome: Literal["started", "already running", "failed"], pid: int | None, reason: str | None = None) -> StartReport:
        tail = process.log_tail(log_file, LOG_TAIL_LINES) if reason else ""
        done = StartReport(server.name, server.address, outcome, pid, time.monotonic() - began, reason, log_file, tail)
        step("done", done)
        return done

    step("checking")
    pid = process.alive_pid(pid_file, server.process_name)
    started = False
    if pid is None:
        pid_file.unlink(missing_ok=True)  # stale, if any
        if _probe(server, min(WAIT_PROBE_TIMEOUT_S, timeout))[0] is None:  # nothing answers there: start it
            step("starting")
            try:
                process.rotate_log(log_file)
                launch = server.prepare(max(deadline - time.monotonic(), 1.0))
                pid = process.spawn(launch.argv, log_file=log_file, pid_file=pid_file,
                                    cwd=layout.data_dir(server.name), run_as=launch.run_as)  # fmt: skip
            except Exception as exc:  # binary missing, initdb failed, unreachable data dir, ...
                return report("failed", None, _describe(exc))
            started = True
    # pid is None here only when something not ours already answers at the address
    if pid is not None:
        step("waiting")
    reason = _wait_answering(server, pid, deadline, timeout) if pid is not None else None
    if reason is None:
        step("setting up")
        try:
            server.bootstrap(max(deadline - time.monotonic(), 1.0))
        except Exception as exc:
            reason = f"answered, but setting it up failed: {_describe(exc)}"
    if reason is not None:
        if started and pid is not None:  # do not leave a half-started process behind
            process.terminate(pid, server.stop_signal, timeout=5.0)
            pid_file.unlink(missing_ok=True)
        return report("failed", pid, reason)
    return report("started" if started else "already running", pid)


def _wait_answering(server: Server, pid: int, deadline: float, timeout: float) -> str | None:
    """Poll the probe until it answers (None), the process dies, or the deadline passes (the reason)."""
    last_error = "no answer yet"
    while True:
        code = process.exit_code(pid)
        if code is not None or not process.is_alive(pid):
            return "exited before answering" + (f" (exit code {code})" if code is not None else "")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return f"did not answer within {timeout:g} s (last probe: {last_error})"
        latency, error = _probe(server, min(WAIT_PROBE_TIMEOUT_S, max(remaining, 0.1)))
        if latency is not None:
            return None
        last_error = error or last_error
        time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))


def _stop(settings: Settings, names: tuple[str, ...], timeout: float) -> list[StopReport]:
    layout = StateLayout.at(settings.state_dir)
    servers = servers_for(settings)
    if not (layout.root / "run").is_dir():
        return [StopReport(name, None) for name in names]  # never started here: nothing to do
    with _locked(layout):
        return _in_parallel(lambda s: _ensure_stopped(s, layout, timeout), [servers[n] for n in names])


def _ensure_stopped(server: Server, layout: StateLayout, timeout: float) -> StopReport:
    pid_file = layout.pid_file(server.name)
    pid = process.alive_pid(pid_file, server.process_name)
    killed = process.terminate(pid, server.stop_signal, timeout) if pid is not None else False
    pid_file.unlink(missing_ok=True)
    return StopReport(server.name, pid, killed)
