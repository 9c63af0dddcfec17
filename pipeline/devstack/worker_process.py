"""Running a worker as a child process (used by ``tickwire demo`` and the tests).

The child gets the parent's settings through ``TICKWIRE_*`` variables, so it
sees exactly the same stack. ``wait_ready`` polls the worker's operator SQL
route until it answers (the worker owns the analytics store and has started
its source), with a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from pydantic import SecretStr

from pipeline.config import Settings
from pipeline.devstack.process import is_alive, terminate
from pipeline.ops.sql_client import SqlError, worker_query


def settings_env(settings: Settings) -> dict[str, str]:
    """``TICKWIRE_*`` variables that reproduce ``settings`` in a child process."""
    env = {}
    for name, value in settings.model_dump().items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is not None:
            env[f"TICKWIRE_{name.upper()}"] = str(value)
    return env


class WorkerProcess:
    def __init__(self, settings: Settings, log_file: Path, extra_env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.log_file = log_file
        self._extra_env = extra_env or {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self) -> WorkerProcess:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_file, "ab")
        env = {**os.environ, **settings_env(self.settings), **self._extra_env}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "worker", "-l", "info"],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        return self

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Return once the worker answers a query; raise with its log tail if it dies or times out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"worker exited with {self._proc.returncode if self._proc else '?'}:\n{self.log_tail()}")
            try:
                if worker_query(self.settings, "SELECT 1") is not None:
                    return
            except SqlError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready after {timeout_s} s:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int | None:
        """Send ``sig`` and wait for exit (SIGKILL after ``timeout_s``); returns the exit code."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.send_signal(sig)
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self._proc.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def worker_pid_file(settings: Settings) -> Path:
    return settings.state_dir / "run" / "worker.pid"


def stop_background_worker(settings: Settings, timeout_s: float = 30.0) -> int | None:
    """Stop the background worker that ``tickwire demo`` leaves running (SIGTERM: graceful).

    Returns its pid, or None when there was none.
    """
    path = worker_pid_file(settings)
    try:
        pid = int(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    if is_alive(pid):
        terminate(pid, signal.SIGTERM, timeout=timeout_s)
    path.unlink(missing_ok=True)
    return pid
