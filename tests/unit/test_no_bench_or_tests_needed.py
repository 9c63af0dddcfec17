"""Nothing installed imports the benchmarks or the tests: every entry point works without ``bench`` and ``tests``."""

from __future__ import annotations

import subprocess
import sys

BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("bench", "tests"):
            raise ImportError(f"No module named {name!r} (blocked: not part of an install)")
        return None
sys.meta_path.insert(0, Block())
"""


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCK + code], capture_output=True, text=True, timeout=120)


def test_every_module_of_the_package_imports_without_bench_or_tests() -> None:
    done = run("""
import pkgutil, importlib, pipeline, agents
names = [m.name for p in (pipeline, agents) for m in pkgutil.walk_packages(p.__path__, p.__name__ + ".")
         if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
print(len(names))
""")
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 100


def test_the_cli_works_and_tickwire_bench_says_what_it_needs() -> None:
    done = run("import sys; sys.argv = ['tickwire', 'worker', '--help']\nfrom pipeline.cli import main\nmain()")
    assert done.returncode == 0 and "--stages" in done.stdout, done.stderr
    bench = run("import sys; sys.argv = ['tickwire', 'bench', '--quick']\nfrom pipeline.cli import main\nmain()")
    assert bench.returncode == 2 and "tickwire bench needs" in bench.stderr and "Traceback" not in bench.stderr
