"""Shared fixtures: one real local stack for the whole test session.

The stack runs on free ports with its own state directory, so it never
collides with a ``make demo`` stack, and it is stopped when the session ends.
Tests keep apart by using their own tenant names (and their own consumer
groups when they start workers).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from pipeline import devstack as stack
from pipeline.config import Settings, load_settings
from pipeline.contracts.catalog import apply_catalog, load_catalog
from pipeline.devstack.worker_process import WorkerProcess


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "stack: needs the real local stack (started by the session fixture)")


@pytest.fixture(scope="session")
def stack_settings() -> Iterator[Settings]:
    """Settings of a running local stack (broker with the catalog applied, cache, postgres, graph), with the
    passwords the stack generated for its servers (read back from its state directory, as every process does)."""
    state = Path(tempfile.mkdtemp(prefix="tickwire-test-stack-"))
    addresses = dict(
        state_dir=state,
        broker_url=f"kafka://127.0.0.1:{_free_port()}",
        cache_url=f"redis://127.0.0.1:{_free_port()}/0",
        postgres_dsn=f"postgresql://tickwire@127.0.0.1:{_free_port()}/tickwire",
        graph_url=f"redis://127.0.0.1:{_free_port()}",
        clickhouse_dsn=f"chdb://{state / 'clickhouse'}",
        api_port=_free_port(),
        session_timeout_ms=6000,
    )
    settings = load_settings(**addresses)
    try:
        stack.up(settings)
        settings = load_settings(**addresses)  # now with the generated passwords
        asyncio.run(apply_catalog(load_catalog(settings.topics_file), settings.bootstrap_servers))
        yield settings
    finally:
        stack.down(settings)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def broker_settings(stack_settings: Settings) -> Settings:
    return stack_settings


@pytest.fixture
def tenant() -> str:
    """A tenant name no other test uses."""
    return "t" + uuid.uuid4().hex[:10]


def start_worker(stack_settings: Settings, directory: Path, group: str, log_name: str, **overrides: object) -> WorkerProcess:
    """A worker on the session stack with its own chDB directory, state dir, group and API port; ready."""
    settings = load_settings(**{
        **stack_settings.model_dump(),
        "group_id": group,
        "app_id": group + "-app",
        "clickhouse_dsn": f"chdb://{directory / 'clickhouse'}",
        "state_dir": directory / "state",
        "api_port": _free_port(),
        **overrides,
    })
    worker = WorkerProcess(settings, directory / log_name).start()
    worker.wait_ready()
    return worker


@pytest.fixture
def worker_factory(stack_settings: Settings, tmp_path: Path) -> Iterator:
    """Start workers (same chDB directory and group unless overridden: a restart); all stopped at teardown."""
    started: list[WorkerProcess] = []
    group = "test-" + uuid.uuid4().hex[:8]

    def start(**overrides: object) -> WorkerProcess:
        worker = start_worker(stack_settings, tmp_path, group, f"worker-{len(started)}.log", **overrides)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="module")
def module_worker(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One worker for a whole test module (e.g. property-based tests with many examples)."""
    worker = start_worker(stack_settings, tmp_path_factory.mktemp("worker"), "mod-" + uuid.uuid4().hex[:8], "worker.log")
    yield worker
    worker.stop()
