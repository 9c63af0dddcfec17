"""How an ingest contender runs and reports: a child process that prints one JSON line.

Each contender (decode ceiling, sink ceiling, Quix Streams peer, naive Faust
agent) is a module run as ``python -m bench.<module>`` in a process of its own
(chDB allows one engine per process, and the bench process must not share a
core's time with what it measures). It consumes the preloaded topic with a
fresh consumer group and prints a :class:`Measurement` as its last stdout line.

Timing, the same for every contender: ``join_s`` is from the consumer's start
to its first record (group join, first fetch); ``seconds`` is from the first
record to the last commit after the last record (or, for the decode ceiling,
which writes and commits nothing, to its last decoded record). ``stored`` is
what a query then sees in ClickHouse (rows of ``ticks FINAL``; 0 for the
decode ceiling): the proof that the contender did the work it was timed on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Measurement:
    records: int
    join_s: float
    seconds: float
    stored: int

    @property
    def rate(self) -> float:
        """Records per second from the first record to the last commit."""
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def emit(self) -> None:
        """Print as the child's last JSON line on stdout (what :func:`run_child` reads), past any redirection (Faust's)."""
        print(json.dumps(asdict(self)), file=sys.__stdout__, flush=True)


class ContenderFailed(RuntimeError):
    """The child exited without a measurement; the message has its output's tail."""


def run_child(argv: list[str], env: dict[str, str], log_file: Path, timeout_s: float) -> Measurement:
    """Run a contender child to completion (stderr to ``log_file``) and return its measurement."""
    with open(log_file, "ab") as log:
        try:
            done = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=log, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise ContenderFailed(f"{' '.join(argv[:3])} did not finish in {timeout_s:.0f} s; log {log_file}") from None
    for line in reversed(done.stdout.decode(errors="replace").splitlines()):
        if line.startswith("{"):
            return Measurement(**json.loads(line))
    tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-20:])
    raise ContenderFailed(f"{' '.join(argv[:3])} exited {done.returncode} without a measurement:\n{tail}")


def python_module(module: str, *args: str, python: str = sys.executable) -> list[str]:
    return [python, "-m", module, *args]
