"""Where the local stack keeps its state: one directory, ``settings.state_dir``.

Contract: every file the stack writes lives under :attr:`StateLayout.root`::

    <state_dir>/run/<server>.pid      pid of the server process we started
    <state_dir>/logs/<server>.log     its stdout+stderr (the previous run's is <server>.log.1)
    <state_dir>/<server>/             its working/data directory
    <state_dir>/secrets/              generated passwords (0700; files 0600)

The state directory is private: 0700, or 0710 when PostgreSQL runs as its own
unprivileged user (started by root) and must pass through it.
"""

from __future__ import annotations

import os
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
        """Create the run, logs and data directories for ``server`` (idempotent), the state directory private."""
        self.make_private()
        for path in (self.pid_file(server).parent, self.log_file(server).parent, self.data_dir(server)):
            path.mkdir(parents=True, exist_ok=True)

    def make_private(self) -> None:
        """The state directory readable by its owner only (0700); 0710 once shared with the group of the user
        PostgreSQL runs as (:meth:`share_with`), who must pass through it to its data directory."""
        self.root.mkdir(parents=True, exist_ok=True)
        shared = self.root.stat().st_gid != os.getegid()
        self.root.chmod(0o710 if shared else 0o700)

    def share_with(self, gid: int) -> None:
        """Let the group ``gid`` (PostgreSQL's, when started by root) pass through the state directory (0710)."""
        self.make_private()
        os.chown(self.root, -1, gid)
        self.root.chmod(0o710)
