"""The benchmark's local stack, fresh stores between phases, and tickwire workers on it.

``tickwire bench`` starts a stack of its own on free ports with a state
directory under /tmp (0755: PostgreSQL runs as an unprivileged user when the
bench runs as root), exactly like the test session's stack, so it never
touches a ``make demo`` stack; the test of the quick mode attaches to the test
session's stack instead. Between phases the broker is restarted (tansu keeps
data in memory only, so that empties every topic) and the cache, vectors and
graphs are cleared, so each phase starts from empty stores.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import redis

from pipeline import devstack as stack
from pipeline.config import Settings, load_settings
from pipeline.contracts.catalog import apply_catalog, load_catalog
from pipeline.devstack.worker_process import WorkerProcess, settings_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class BenchStack:
    """A running stack the bench uses; ``close`` stops the workers and deletes the bench's files, and the
    stack too if the bench started it."""

    settings: Settings
    root: Path
    owned: bool
    workers: list[WorkerProcess] = field(default_factory=list)

    @classmethod
    def start(cls, session_timeout_ms: int) -> BenchStack:
        """Start the stack. ``session_timeout_ms`` is every consumer's: tansu makes a first join wait half of it."""
        root = Path(tempfile.mkdtemp(prefix="tickwire-bench-"))
        root.chmod(0o755)
        state = root / "stack"
        addresses = dict(
            state_dir=state,
            broker_url=f"kafka://127.0.0.1:{free_port()}",
            cache_url=f"redis://127.0.0.1:{free_port()}/0",
            postgres_dsn=f"postgresql://tickwire@127.0.0.1:{free_port()}/tickwire",
            graph_url=f"redis://127.0.0.1:{free_port()}",
            clickhouse_dsn=f"chdb://{root / 'unused-clickhouse'}",
            api_port=free_port(),
            session_timeout_ms=session_timeout_ms,
        )
        settings = load_settings(**addresses)
        bench = cls(settings, root, owned=True)
        try:
            stack.up(settings)
            bench.settings = load_settings(**addresses)  # with the passwords the stack generated
            bench.apply_catalog()
        except BaseException:
            bench.close()
            raise
        return bench

    @classmethod
    def attach(cls, settings: Settings, session_timeout_ms: int) -> BenchStack:
        """Use a stack that is already running (the test session's). Its topics and stores get emptied
        between phases like the bench's own; it is left running at the end."""
        root = Path(tempfile.mkdtemp(prefix="tickwire-bench-"))
        root.chmod(0o755)
        return cls(load_settings(**{**settings.model_dump(), "session_timeout_ms": session_timeout_ms}), root, owned=False)

    def apply_catalog(self) -> None:
        asyncio.run(apply_catalog(load_catalog(self.settings.topics_file), self.settings.bootstrap_servers))

    def fresh_topics(self) -> None:
        """Empty every topic (tansu keeps data in memory only: a restart empties it) and the derived stores."""
        self.stop_workers()
        stack.stop_server(self.settings, "broker")
        stack.start_server(self.settings, "broker")
        self.apply_catalog()
        self.clear_derived()

    def clear_cache(self) -> None:
        """Empty the cache (hot keys, published-signal markers)."""
        redis.Redis.from_url(self.settings.cache_connection_url).flushdb()

    def clear_derived(self) -> None:
        """Empty the cache, the pattern vectors and the graphs."""
        self.clear_cache()
        redis.Redis.from_url(self.settings.graph_connection_url).flushall()
        asyncio.run(_truncate_patterns(self.settings.postgres_connection_dsn))

    def directory(self, name: str) -> Path:
        """A new empty directory under the bench's root (chDB data, logs of one run)."""
        path = self.root / f"{name}-{uuid.uuid4().hex[:6]}"
        path.mkdir(parents=True)
        return path

    def contender_settings(self, name: str, **overrides: object) -> Settings:
        """Settings for one run: a fresh group, app id, chDB directory, state dir and API port. The API's per-key
        rate limit and per-tenant query cap are lifted: the API load uses one key at full speed on purpose."""
        directory = self.directory(name)
        group = f"bench-{name}-{uuid.uuid4().hex[:8]}"
        return load_settings(**{
            **self.settings.model_dump(),
            "group_id": group,
            "app_id": group + "-app",
            "clickhouse_dsn": f"chdb://{directory / 'clickhouse'}",
            "state_dir": directory / "state",
            "api_port": free_port(),
            "api_rate_per_s": 1e9,
            "api_rate_burst": 10**9,
            "api_tenant_queries": 64,
            **overrides,
        })

    def child_env(self, settings: Settings) -> dict[str, str]:
        """The environment of a contender child: ours, with ``TICKWIRE_*`` variables of ``settings``."""
        return {**os.environ, **settings_env(settings)}

    def worker(self, settings: Settings) -> WorkerProcess:
        """A tickwire worker (``pipeline.devstack.worker_process.WorkerProcess``) on ``settings``, not started; stopped by ``close``."""
        worker = WorkerProcess(settings, settings.state_dir.parent / "worker.log")
        self.workers.append(worker)
        return worker

    def stop_worker(self, worker: WorkerProcess) -> None:
        worker.stop()
        self.workers.remove(worker)

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers.clear()

    def close(self) -> None:
        self.stop_workers()
        try:
            if self.owned:
                stack.down(self.settings)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


async def _truncate_patterns(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("DO $$ BEGIN IF to_regclass('patterns') IS NOT NULL THEN TRUNCATE patterns; END IF; END $$")
    finally:
        await connection.close()
