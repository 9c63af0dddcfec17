"""Profiling the worker while it is measured (``tickwire bench --profile``): py-spy, summarised.

py-spy samples the worker's Python stacks (every thread, non-idle samples only)
from the first commit of a measured run to its end, and writes them in its
``raw`` (collapsed stacks) format. :func:`summarise` turns that into the top
functions by own time (where the CPU is spent) and by inclusive time (which
of tickwire's steps it is spent under), as shares of all samples.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

TOP = 15
_LINE = re.compile(r" \(([^():]+):\d+\)$")


def py_spy() -> str:
    """The py-spy executable (``pip install py-spy``, in the ``bench`` extra)."""
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise RuntimeError("--profile needs py-spy: pip install 'tickwire[bench]' (or pip install py-spy==0.4.3)")
    return found


class Profiler:
    """py-spy attached to one process until :meth:`stop`."""

    def __init__(self, pid: int, output: Path) -> None:
        self.output = output
        output.parent.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen([py_spy(), "record", "-p", str(pid), "-f", "raw", "-r", "200", "--nonblocking",
                                       "-o", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> dict[str, object]:
        """Stop sampling (py-spy writes its file on SIGINT) and summarise."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
        self._proc.wait(60)
        return summarise(self.output)


def _function(frame: str) -> str:
    """``name (module/file.py)`` of a py-spy frame ``name (path/file.py:line)``."""
    return _LINE.sub(lambda m: f" ({m.group(1)})", frame)


def summarise(raw: Path, top: int = TOP) -> dict[str, object]:
    """Top functions by own and by inclusive share of the samples in a py-spy raw file."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_function(f) for f in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return {"samples": 0, "own": [], "inclusive": []}

    def shares(counter: Counter[str]) -> list[list[object]]:
        return [[round(n / total * 100, 1), frame] for frame, n in counter.most_common(top)]

    ours = Counter({f: n for f, n in inclusive.items() if "pipeline/" in f or "agents/" in f})
    return {"samples": total, "raw": raw.name, "own": shares(own), "inclusive": shares(ours)}
