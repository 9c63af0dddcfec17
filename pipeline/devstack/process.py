"""Background server processes: spawn detached, track by pid file, stop with a deadline.

Contracts:
- :func:`spawn` starts a process in its own session (it outlives the caller and
  is not hit by the caller's Ctrl-C), with stdout+stderr going to a log file,
  and records its pid in a pid file.
- :func:`alive_pid` trusts a pid file only if that pid is alive, not a zombie,
  and its command line still names the expected binary (so a stale pid reused
  by an unrelated process is never signalled).
- :func:`terminate` sends one signal, waits up to a deadline, then SIGKILLs the
  whole process group; it returns only once the process is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

# Children spawned by this process, so that they are reaped (no zombies, no
# "still running" ResourceWarning) and their exit codes can be read.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class RunAs:
    """An unprivileged user to run a server as (only used when we are root)."""

    name: str
    uid: int
    gid: int


def spawn(argv: list[str], *, log_file: Path, pid_file: Path, cwd: Path, run_as: RunAs | None = None) -> int:
    """Start ``argv`` detached, appending its output to ``log_file``; return its pid."""
    with open(log_file, "ab") as log:
        log.write(f"--- tickwire stack: {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            user=run_as.uid if run_as else None,
            group=run_as.gid if run_as else None,
            extra_groups=[] if run_as else None,
        )
    _CHILDREN[proc.pid] = proc
    write_pid(pid_file, proc.pid)
    return proc.pid


def rotate_log(log_file: Path) -> None:
    """Keep the previous run's log as ``<name>.log.1`` so a tail shows only the new run."""
    if log_file.exists():
        log_file.replace(log_file.with_name(log_file.name + ".1"))


def exit_code(pid: int) -> int | None:
    """The exit code of a child we spawned that has exited, else None."""
    proc = _CHILDREN.get(pid)
    return None if proc is None else proc.poll()


def write_pid(pid_file: Path, pid: int) -> None:
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(pid_file)


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def alive_pid(pid_file: Path, binary: str) -> int | None:
    """The pid in ``pid_file`` if that process is alive and runs ``binary``; else None."""
    pid = read_pid(pid_file)
    if pid is None or not is_alive(pid):
        return None
    cmdline = _cmdline(pid)
    if cmdline is not None and binary not in cmdline:
        return None  # the pid was reused by something else
    return pid


def is_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (reaping it if it is our child)."""
    proc = _CHILDREN.get(pid)
    if proc is not None and proc.poll() is not None:
        _CHILDREN.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return _state(pid) != "Z"


def terminate(pid: int, sig: int = signal.SIGTERM, timeout: float = 10.0) -> bool:
    """Send ``sig`` to ``pid``, wait up to ``timeout`` s, then SIGKILL its process group.

    Returns True if the process had to be killed. Returns once it is gone.
    """
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    if _wait_gone(pid, timeout):
        return False
    try:
        os.killpg(pid, signal.SIGKILL)  # spawn() made it a session (and group) leader
    except (ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)
    _wait_gone(pid, 5.0)
    return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def log_tail(log_file: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of ``log_file`` ('' if it does not exist)."""
    try:
        with open(log_file, encoding="utf-8", errors="replace") as fh:
            return "".join(deque(fh, maxlen=lines)).rstrip("\n")
    except FileNotFoundError:
        return ""


def _cmdline(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None  # no /proc (macOS): trust the pid


def _state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]
