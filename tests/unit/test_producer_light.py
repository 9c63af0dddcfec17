"""The producer side installs and imports where MT5 runs (Windows): the base install, no extra.

A bridge needs ``pipeline.ingest.producer.MT5Producer`` (and examples/mt5_bridge.py shows one): they
must import with every package of the ``worker`` extra missing, as on a machine that installed
``pip install tickwire`` only. A subprocess blocks those packages (and the Windows-only MetaTrader5)
with a meta-path finder; the sources of the producer's rooms are also read for imports of them,
including lazy ones inside functions; and pyproject.toml keeps them out of the base install.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
#: Top-level modules a producer machine does not have: the worker extra's, chDB, and the MT5 terminal's package.
BLOCKED = ("faust", "mode", "aiohttp", "multidict", "uvloop", "numpy", "clickhouse_connect", "chdb", "redis", "hiredis",
           "asyncpg", "pgvector", "weaviate", "arango", "falkordb", "prometheus_client", "talipp", "MetaTrader5")
#: The producer's code: what a bridge imports.
PRODUCER_SOURCES = [*sorted((ROOT / "pipeline" / "ingest").rglob("*.py")), ROOT / "pipeline" / "core" / "kafka.py",
                    ROOT / "pipeline" / "config.py", *sorted((ROOT / "pipeline" / "contracts").rglob("*.py")),
                    ROOT / "pipeline" / "__init__.py", ROOT / "pipeline" / "core" / "__init__.py",
                    ROOT / "examples" / "mt5_bridge.py"]

BLOCK = f"""
import importlib.abc, sys
BLOCKED = {BLOCKED!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"No module named {{name!r}} (blocked: not on a producer machine)")
        return None
sys.meta_path.insert(0, Block())
"""


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCK + code], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_the_producer_and_the_bridge_import_and_start_without_the_worker_packages() -> None:
    done = run(f"""
import importlib, importlib.util, pkgutil
from pipeline.ingest.producer import MT5Producer
from pipeline.config import load_settings
import pipeline.contracts, pipeline.ingest, pipeline.core.kafka
names = [m.name for p in (pipeline.contracts, pipeline.ingest) for m in pkgutil.walk_packages(p.__path__, p.__name__ + ".")]
for name in names:
    importlib.import_module(name)
spec = importlib.util.spec_from_file_location("mt5_bridge", {str(ROOT / "examples" / "mt5_bridge.py")!r})
bridge = importlib.util.module_from_spec(spec)
sys.modules["mt5_bridge"] = bridge
spec.loader.exec_module(bridge)
import asyncio
async def make():
    return MT5Producer(load_settings(), server_utc_offset_hours=2)  # made (aiokafka wants a loop), not connected
asyncio.run(make())
loaded = sorted({{name.split(".")[0] for name in sys.modules}} & set(BLOCKED))
print(len(names), bridge.MT5Source.__name__, loaded)
""")
    assert done.returncode == 0, done.stderr
    count, source, loaded = done.stdout.split(maxsplit=2)
    assert int(count) >= 8 and source == "MT5Source" and loaded.strip() == "[]", done.stdout


def test_the_block_does_block() -> None:
    for module in ("numpy", "faust", "redis", "pipeline.stores.analytics"):
        done = run(f"import {module}")
        assert done.returncode != 0 and "blocked: not on a producer machine" in done.stderr, (module, done.stderr)


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports, at import time or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_no_module_of_the_producer_side_imports_a_worker_package_even_lazily() -> None:
    offenders = {str(path.relative_to(ROOT)): sorted(imported_modules(path) & set(BLOCKED)) for path in PRODUCER_SOURCES}
    # the bridge imports MetaTrader5 inside MT5Source.open, on the terminal's machine: that one is expected
    assert offenders.pop("examples/mt5_bridge.py") == ["MetaTrader5"]
    assert not {path: names for path, names in offenders.items() if names}


def test_the_base_install_has_none_of_them_and_uvloop_stays_off_windows() -> None:
    base = [Requirement(item) for item in PROJECT["dependencies"]]
    worker = [Requirement(item) for item in PROJECT["optional-dependencies"]["worker"]]
    modules = packages_distributions()
    distributions_of = {module: {canonicalize_name(d) for d in dists} for module, dists in modules.items()}
    blocked_distributions = {d for module in BLOCKED for d in distributions_of.get(module, set())}
    assert {"faust-streaming", "numpy", "redis", "uvloop"} <= blocked_distributions
    assert not {canonicalize_name(r.name) for r in base} & blocked_distributions
    assert {canonicalize_name(r.name) for r in base} == {"aiokafka", "msgspec", "orjson", "pydantic", "pydantic-settings",
                                                       "pyyaml", "click", "rich"}
    # every package of the worker extra is one the producer test blocks (a new one must be added to BLOCKED)
    worker_modules = {module for module, dists in distributions_of.items() if dists & {canonicalize_name(r.name) for r in worker}}
    assert len(worker_modules) >= 14 and worker_modules <= set(BLOCKED), sorted(worker_modules - set(BLOCKED))
    (uvloop,) = [r for r in worker if r.name == "uvloop"]
    assert uvloop.marker is not None
    assert not uvloop.marker.evaluate({"sys_platform": "win32"}) and uvloop.marker.evaluate({"sys_platform": "linux"})
