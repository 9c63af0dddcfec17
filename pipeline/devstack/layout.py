"""Where the local stack keeps its state: one directory, ``settings.state_dir``.

Contract: every file the stack writes lives under :attr:`StateLayout.root`::

    <state_dir>/run/<server>.pid      pid of the server process we started
    <state_dir>/logs/<server>.log     its stdout+stderr (the previous run's is <server>.log.1)
    <state_dir>/<server>/             its working/data directory
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StateLayout:
    """Paths under one state directory. ``root`` is absolute (resolved against the cwd once)."""

    root: Path

    @classmethod
    def at(cls, state_dir: Path) -> StateLayout:
        """The layout for ``state_dir``, resolved to an absolute path (nothing is created)."""
        return cls(Path(state_dir).expanduser().resolve())

    def pid_file(self, server: str) -> Path:
        return self.root / "run" / f"{server}.pid"

    def log_file(self, server: str) -> Path:
        return self.root / "logs" / f"{server}.log"

    def data_dir(self, server: str) -> Path:
        return self.root / server

    def create(self, server: str) -> None:
        """Create the run, logs and data directories for ``server`` (idempotent)."""
        for path in (self.pid_file(server).parent, self.log_file(server).parent, self.data_dir(server)):
            path.mkdir(parents=True, exist_ok=True)
