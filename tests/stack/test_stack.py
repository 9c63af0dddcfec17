"""The local stack (pipeline.devstack) against the real servers from the wheels.

Each test uses its own state dir under tmp_path and its own free ports, so it
never touches a stack started for other tests (or by a developer).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from falkordb import FalkorDB

from pipeline.config import Settings, load_settings
from pipeline.devstack import (
    SERVER_NAMES,
    StackConfigError,
    StackStartError,
    down,
    start_server,
    status,
    stop_server,
    up,
)
from pipeline.devstack.layout import StateLayout
from pipeline.devstack.postgres import blocked_ancestor, service_user

CLI = [sys.executable, "-c", "from pipeline.cli.stack import stack; stack()"]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _env_for(state_dir: Path) -> dict[str, str]:
    broker, cache, pg, graph = _free_ports(4)
    return {
        "TICKWIRE_STATE_DIR": str(state_dir),
        "TICKWIRE_BROKER_URL": f"kafka://127.0.0.1:{broker}",
        "TICKWIRE_CACHE_URL": f"redis://127.0.0.1:{cache}/0",
        "TICKWIRE_POSTGRES_DSN": f"postgresql://tickwire@127.0.0.1:{pg}/tickwire",
        "TICKWIRE_GRAPH_URL": f"redis://127.0.0.1:{graph}",
        "TICKWIRE_CLICKHOUSE_DSN": f"chdb://{state_dir}/clickhouse",
    }


def _settings(env: dict[str, str]) -> Settings:
    return load_settings(**{k.removeprefix("TICKWIRE_").lower(): v for k, v in env.items()})


def _open_for_postgres_user(path: Path) -> None:
    """As root, postgres runs as an unprivileged user that must be able to enter the state dir.

    pytest's base temp dir is 0700; grant traversal (o+x) on the blocking dirs, but only
    inside the system temp dir. Anywhere else the stack's own error should surface.
    """
    if os.geteuid() != 0:
        return
    user = service_user()
    assert user is not None
    temp_root = Path(tempfile.gettempdir()).resolve()
    while (blocked := blocked_ancestor(path, user)) is not None and blocked.is_relative_to(temp_root):
        blocked.chmod(blocked.stat().st_mode | 0o001)


def _gone(pid: int) -> bool:
    """No such process, or only a zombie waiting for its (re)parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@pytest.fixture
def stack_env(tmp_path: Path) -> Iterator[tuple[Settings, dict[str, str]]]:
    _open_for_postgres_user(tmp_path)
    env = _env_for(tmp_path / "state")
    settings = _settings(env)
    yield settings, env
    down(settings, timeout=5)  # never leave servers behind, even when a test failed


# -- clients that prove each server really works ------------------------------------------


async def _kafka_roundtrip(settings: Settings) -> None:
    servers = settings.bootstrap_servers
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic("stack.check", num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=servers)
    await producer.start()
    try:
        await producer.send_and_wait("stack.check", b"hello", key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partition = TopicPartition("stack.check", 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        deadline = time.monotonic() + 15
        values: list[bytes] = []
        while not values and time.monotonic() < deadline:
            batch = await consumer.getmany(partition, timeout_ms=500)
            values = [record.value for record in batch.get(partition, [])]
        assert values == [b"hello"]
    finally:
        await consumer.stop()


def _cache_roundtrip(settings: Settings) -> None:
    with redis.Redis.from_url(settings.cache_connection_url) as client:
        client.set("tw:stack:check", "42")
        assert client.get("tw:stack:check") == b"42"


async def _postgres_vector(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.postgres_connection_dsn, ssl=False)
    try:
        assert await conn.fetchval("SELECT '[1,2]'::vector::text") == "[1,2]"
        assert await conn.fetchval("SELECT current_database()") == "tickwire"
    finally:
        await conn.close()


def _graph_cypher(settings: Settings) -> None:
    graph = FalkorDB.from_url(settings.graph_connection_url).select_graph("stack_check")
    graph.query("CREATE (:Symbol {name: 'EURUSD'})-[:CORRELATES]->(:Symbol {name: 'GBPUSD'})")
    result = graph.query("MATCH (a:Symbol)-[:CORRELATES]->(b:Symbol) RETURN a.name, b.name")
    assert result.result_set == [["EURUSD", "GBPUSD"]]


def _assert_private(root: Path) -> None:
    mode = stat.S_IMODE(root.stat().st_mode)
    assert mode in (0o700, 0o710), oct(mode)  # 0710: shared with PostgreSQL's own user's group (started by root)
    assert not mode & 0o007, "nothing for other users"
    secrets_dir = root / "secrets"
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
    files = sorted(secrets_dir.iterdir())
    assert [f.name for f in files] == ["tickwire_cache_password", "tickwire_graph_password", "tickwire_postgres_password"]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 and len(f.read_text()) >= 24 for f in files)
    commands = " ".join(Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                        for pid in os.listdir("/proc") if pid.isdigit() and Path(f"/proc/{pid}/cmdline").exists())
    assert not any(f.read_text() in commands for f in files), "a password on a command line"


async def _refused_without_password(settings: Settings) -> None:
    for url in (settings.cache_url, settings.graph_url):
        with redis.Redis.from_url(url) as client, pytest.raises(redis.exceptions.AuthenticationError):
            client.ping()
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(settings.postgres_dsn, ssl=False)
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(settings.postgres_dsn, password="not-it", ssl=False)


# -- tests ---------------------------------------------------------------------------------


async def test_up_status_clients_stop_down(stack_env: tuple[Settings, dict[str, str]], tmp_path: Path) -> None:
    settings, env = stack_env
    layout = StateLayout.at(settings.state_dir)

    # up through the CLI, in a process that exits: the servers must outlive it
    cli = await asyncio.to_thread(
        subprocess.run, [*CLI, "up"], env={**os.environ, **env}, cwd=tmp_path, capture_output=True, text=True, timeout=150
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    settings = _settings(env)  # read again: now with the passwords `up` generated into the state directory

    rows = await asyncio.to_thread(status, settings)
    assert [r.name for r in rows] == list(SERVER_NAMES)
    for row in rows:
        assert row.running and row.answering, row
        assert row.pid == int(layout.pid_file(row.name).read_text())
        assert row.latency_ms is not None and row.latency_ms >= 0
        assert layout.log_file(row.name).exists()
    pids = {r.name: r.pid for r in rows}

    # up again changes nothing
    again = await asyncio.to_thread(up, settings)
    assert {r.name: (r.outcome, r.pid) for r in again} == {n: ("already running", pids[n]) for n in SERVER_NAMES}

    # the state is private and the servers want their passwords (which are nowhere on a command line)
    _assert_private(layout.root)
    await _refused_without_password(settings)

    # a real client talks to each server
    await _kafka_roundtrip(settings)
    _cache_roundtrip(settings)
    await _postgres_vector(settings)
    _graph_cypher(settings)

    # stop one server: status shows it down, the others still answer; then bring it back
    stopped = await asyncio.to_thread(stop_server, settings, "cache")
    assert stopped.pid == pids["cache"] and not stopped.killed
    by_name = {r.name: r for r in await asyncio.to_thread(status, settings)}
    assert not by_name["cache"].running and not by_name["cache"].answering and by_name["cache"].pid is None
    assert all(by_name[n].answering for n in ("broker", "postgres", "graph"))
    assert _gone(pids["cache"]) and not layout.pid_file("cache").exists()
    restarted = await asyncio.to_thread(start_server, settings, "cache")
    assert restarted.outcome == "started" and restarted.pid != pids["cache"]
    pids["cache"] = restarted.pid
    _cache_roundtrip(settings)

    # status through the CLI: exit 0 when everything answers
    cli = await asyncio.to_thread(subprocess.run, [*CLI, "status"], env={**os.environ, **env}, cwd=tmp_path,
                                  capture_output=True, text=True, timeout=60)  # fmt: skip
    assert cli.returncode == 0, cli.stdout + cli.stderr

    # down: nothing left running, no pid files; down again is harmless
    reports = await asyncio.to_thread(down, settings)
    assert {r.name: r.pid for r in reports} == pids
    assert all(_gone(pid) for pid in pids.values() if pid is not None)
    assert not any(layout.pid_file(n).exists() for n in SERVER_NAMES)
    assert not any(r.running or r.answering for r in await asyncio.to_thread(status, settings))
    assert all(r.pid is None for r in await asyncio.to_thread(down, settings))


@pytest.mark.parametrize("name", SERVER_NAMES)
def test_server_that_cannot_bind_is_reported_with_its_log(stack_env: tuple[Settings, dict[str, str]], name: str) -> None:
    settings, _ = stack_env
    server_port = {"broker": settings.bootstrap_servers[0], "cache": settings.cache_url,
                   "postgres": settings.postgres_dsn, "graph": settings.graph_url}[name]  # fmt: skip
    port = int(server_port.rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as squatter:  # takes the port, accepts connections, never answers
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        began = time.monotonic()
        with pytest.raises(StackStartError) as caught:
            start_server(settings, name, timeout=20)
        elapsed = time.monotonic() - began
    assert elapsed < 20, f"took {elapsed:.1f} s: waited for the deadline instead of noticing the exit"
    (report,) = caught.value.reports
    assert report.name == name and report.outcome == "failed"
    assert "exited before answering" in (report.reason or "")
    assert re.search(r"address already in use|addrinuse|could not bind", report.log_tail, re.IGNORECASE), report.log_tail
    assert name in str(caught.value) and report.log_tail.splitlines()[-1] in str(caught.value)
    assert not StateLayout.at(settings.state_dir).pid_file(name).exists()


def test_non_loopback_address_is_a_config_error(tmp_path: Path) -> None:
    env = _env_for(tmp_path / "state")
    env["TICKWIRE_CACHE_URL"] = "redis://10.1.2.3:6379/0"
    with pytest.raises(StackConfigError, match="TICKWIRE_CACHE_URL"):
        status(_settings(env))
    cli = subprocess.run([*CLI, "up"], env={**os.environ, **env}, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert cli.returncode == 2 and "TICKWIRE_CACHE_URL" in cli.stderr


def test_down_without_a_stack_is_harmless(tmp_path: Path) -> None:
    settings = _settings(_env_for(tmp_path / "state"))
    assert all(r.pid is None for r in down(settings))
    assert not (tmp_path / "state").exists()
