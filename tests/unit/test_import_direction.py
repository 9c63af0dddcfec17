"""Imports point one way: a room of ``pipeline`` imports only the rooms below it (docs/architecture.md).

Every module of ``pipeline`` and ``agents`` is parsed (nothing is imported) and each of its imports of
another room is checked against :data:`MAY_IMPORT`. Imports inside functions count too: a lazy import is
still a dependency, with one named exception (the CLI starts the benchmarks only when ``tickwire bench`` runs).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: room -> the rooms it may import (besides itself and third-party code)
MAY_IMPORT: dict[str, set[str]] = {
    "contracts": set(),
    "config": {"contracts"},
    "core": {"contracts", "config"},
    "stores": {"core", "contracts", "config"},
    "sinks": {"stores", "core", "contracts", "config"},
    "derive": {"sinks", "stores", "core", "contracts", "config"},
    "agents": {"derive", "sinks", "core", "contracts"},
    "runtime": {"agents", "derive", "sinks", "stores", "core", "contracts", "config", "api"},
    "ingest": {"core", "contracts", "config"},
    "api": {"derive", "stores", "core", "contracts", "config"},
    "ops": {"runtime", "ingest", "derive", "sinks", "stores", "core", "contracts", "config"},
    "devstack": {"ops", "ingest", "api", "stores", "core", "contracts", "config"},
    "cli": {"devstack", "ops", "ingest", "api", "runtime", "stores", "core", "contracts", "config"},
    "package": {"cli"},  # pipeline/__init__.py, pipeline/__main__.py
}
#: (module, imported module) pairs allowed against the rules, and why
EXCEPTIONS = {
    ("pipeline.cli.main", "bench.cli"): "tickwire bench runs the benchmarks, imported only inside that command",
}


def room_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "agents":
        return "agents"
    if parts[0] == "bench":
        return "bench"
    if parts[0] == "tests":
        return "tests"
    if parts[0] != "pipeline":
        return None
    if len(parts) == 1 or parts[1] in ("__main__",):
        return "package"
    return parts[1]


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "pipeline":  # from pipeline import room
                found += [f"pipeline.{alias.name}" for alias in node.names]
            else:
                found.append(node.module)
    return found


SOURCES = sorted([*ROOT.joinpath("pipeline").rglob("*.py"), *ROOT.joinpath("agents").rglob("*.py")])


def test_every_room_is_known() -> None:
    rooms = {room_of(module_name(path)) for path in SOURCES}
    assert rooms <= set(MAY_IMPORT), rooms - set(MAY_IMPORT)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_one_way(path: Path) -> None:
    module = module_name(path)
    room = room_of(module)
    assert room is not None
    wrong = []
    for imported in imports_of(path):
        target = room_of(imported)
        if target is None or target == room or (module, imported) in EXCEPTIONS:
            continue
        if target in ("bench", "tests") or target not in MAY_IMPORT[room]:
            wrong.append(f"{imported} ({target})")
    assert not wrong, f"{module} ({room}) may import {sorted(MAY_IMPORT[room])}, not: {', '.join(wrong)}"


def test_the_rules_have_no_cycle() -> None:
    def reaches(start: str, goal: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})) for nxt in MAY_IMPORT.get(start, ()))

    assert not [room for room in MAY_IMPORT if reaches(room, room)]
