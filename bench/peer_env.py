"""The Python environment of the Quix Streams peer.

Quix Streams 3.28 pins ``pydantic<2.14`` and ``pydantic-settings<2.16`` while
tickwire pins newer ones, so pip cannot install both into one environment.
The peer therefore runs in a venv of its own, made once per machine under the
user's cache directory (``$XDG_CACHE_HOME/tickwire/bench-quixstreams-<version>``):
``quixstreams`` and its dependencies from PyPI first on its path, then this
environment's site-packages (chDB, clickhouse-connect, redis, tickwire's own
DDL and Lua script) after them, so the peer writes with exactly the same code
as the other contenders while Quix gets the versions it was released with.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

QUIXSTREAMS = "quixstreams==3.28.1"
_DONE = ".tickwire-complete"


def peer_env_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "tickwire" / f"bench-{QUIXSTREAMS.replace('==', '-')}"


def peer_python() -> Path:
    """The peer's interpreter, creating its venv first if needed (one pip install from PyPI)."""
    root = peer_env_dir()
    python = root / "bin" / "python"
    if (root / _DONE).exists() and python.exists():
        return python
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, capture_output=True)
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", QUIXSTREAMS],
                             capture_output=True, text=True)
    if install.returncode != 0:
        raise RuntimeError(f"could not install {QUIXSTREAMS} into {root}:\n{install.stderr[-2000:]}")
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    # Appended after the peer's own site-packages (and their .pth files run), so Quix's pins win.
    (Path(purelib) / "zz-tickwire-bench.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    (root / _DONE).write_text(QUIXSTREAMS)
    return python
