"""requirements/worker.lock (what the image installs, hash-checked) is in step with pyproject.toml.

No network: the lock and pyproject.toml are read. The lock's header records a digest of the image's
dependency lists (requirements/compile.py computes it, and writes the lock); a change to those lists
without regenerating the lock fails here, and so does a lock edited by hand: a direct dependency at
another version, an entry without a sha256, or a package of the local stack, the tests or the bench.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "worker.lock"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: Where the image runs (python:3.11-slim on x86_64): the environment the lock's markers are evaluated for.
IMAGE_ENV = {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
             "python_version": "3.11", "python_full_version": "3.11.7", "implementation_name": "cpython",
             "platform_python_implementation": "CPython"}


def compile_module():
    spec = importlib.util.spec_from_file_location("requirements_compile", ROOT / "requirements" / "compile.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lock_entries(text: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of every requirement of a ``--generate-hashes`` lock."""
    entries: dict[str, tuple[str, list[str]]] = {}
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        requirement, *options = line.split()
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)", requirement)
        assert match, f"not an exact pin: {line[:120]!r}"
        assert all(option.startswith("--hash=") for option in options), f"unexpected option in {line[:120]!r}"
        name = canonicalize_name(match.group(1))
        assert name not in entries, f"{name} is locked twice"
        entries[name] = (match.group(2), [option.removeprefix("--hash=") for option in options])
    return entries


LOCK_TEXT = LOCK.read_text()
ENTRIES = lock_entries(LOCK_TEXT)


def image_requirements() -> list[Requirement]:
    project = PYPROJECT["project"]
    listed = [*project["dependencies"], *(item for extra in compile_module().IMAGE_EXTRAS
                                          for item in project["optional-dependencies"][extra])]
    return [Requirement(item) for item in listed]


def test_the_header_says_how_it_was_made_and_its_digest_is_pyprojects() -> None:
    compiler = compile_module()
    header = [line for line in LOCK_TEXT.splitlines() if line.startswith("#") and not line.startswith("# via")][:12]
    text = "\n".join(header)
    assert "uv pip compile" in text and "python requirements/compile.py" in text
    assert " ".join(compiler.COMMAND) in text, "the header must show the exact command"
    recorded = [line.removeprefix(compiler.DIGEST_LINE) for line in header if line.startswith(compiler.DIGEST_LINE)]
    assert recorded == [compiler.dependency_digest(PYPROJECT)], (
        "pyproject.toml's dependencies changed since requirements/worker.lock was generated: "
        "run `python requirements/compile.py` (needs uv)")


def test_the_digest_changes_with_any_dependency_but_not_with_their_order() -> None:
    compiler = compile_module()
    digest = compiler.dependency_digest(PYPROJECT)
    changed = tomllib.loads((ROOT / "pyproject.toml").read_text())
    changed["project"]["optional-dependencies"]["worker"][0] += "0"
    assert compiler.dependency_digest(changed) != digest
    reordered = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reordered["project"]["dependencies"].reverse()
    assert compiler.dependency_digest(reordered) == digest


def test_every_direct_dependency_of_the_image_is_locked_at_its_pinned_version() -> None:
    requirements = image_requirements()
    assert len(requirements) > 15
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        applies = requirement.marker is None or requirement.marker.evaluate(IMAGE_ENV)
        if not applies:
            assert name not in ENTRIES, f"{name} does not apply on linux but is locked"
            continue
        (pin,) = [spec.version for spec in requirement.specifier if spec.operator == "=="] or [None]
        assert pin is not None, f"{requirement}: every direct dependency is pinned with =="
        assert name in ENTRIES, f"{name} is a dependency of the image but not in the lock"
        assert ENTRIES[name][0] == pin, f"{name}: pyproject.toml pins {pin}, the lock has {ENTRIES[name][0]}"


def test_every_entry_is_pinned_by_sha256() -> None:
    assert len(ENTRIES) > 40
    for name, (_, hashes) in ENTRIES.items():
        assert hashes, f"{name} has no hash"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), f"{name}: {hashes}"


def required_by(text: str) -> dict[str, set[str]]:
    """name -> what requires it, from the lock's ``# via`` annotations (``tickwire`` for a direct dependency)."""
    via: dict[str, set[str]] = {}
    current: str | None = None
    listing = False
    for line in text.replace("\\\n", " ").splitlines():
        stripped = line.strip()
        if line and not line[0].isspace() and not line.startswith("#"):
            current, listing = canonicalize_name(line.split("==")[0]), False
            via[current] = set()
        elif current and stripped.startswith("# via"):
            rest = stripped.removeprefix("# via").strip()
            listing = not rest
            if rest:
                via[current].add(canonicalize_name(rest.split()[0]))
        elif current and listing and stripped.startswith("#   "):
            via[current].add(canonicalize_name(stripped.removeprefix("#").split()[0]))
    return via


def test_every_entry_is_needed_by_the_image_and_none_belongs_to_the_local_stack_the_tests_or_the_bench() -> None:
    via = required_by(LOCK_TEXT)
    assert set(via) == set(ENTRIES)
    needed = {"tickwire"}
    while True:
        more = {name for name, parents in via.items() if parents & needed} - needed
        if not more:
            break
        needed |= more
    assert set(ENTRIES) <= needed, f"locked but required by nothing of the image: {sorted(set(ENTRIES) - needed)}"
    direct = {name for name, parents in via.items() if "tickwire" in parents}
    assert direct == {canonicalize_name(r.name) for r in image_requirements()}
    extras = PYPROJECT["project"]["optional-dependencies"]
    local = {canonicalize_name(Requirement(item).name) for item in extras["local"]}
    assert "chdb" in local and not local & set(ENTRIES), sorted(local & set(ENTRIES))
    assert not {"pytest", "hypothesis", "mypy", "matplotlib", "py-spy"} & set(ENTRIES)
