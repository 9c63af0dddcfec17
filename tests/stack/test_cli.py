"""The ``tickwire`` command line as an operator meets it: one line on stderr and a documented exit code for
every failure (never a traceback, never a library's log line), data on stdout (``--json`` on listings, tables
never cut when piped), ``--version``, ``--debug``, ``config`` with its secrets masked, ``status`` of a running
worker, a held chDB directory named as such, and ``stack up``'s progress per server.

Every command runs as a subprocess (``python -m pipeline``), as an operator runs it, with the settings as
``TICKWIRE_*`` variables.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import time
import uuid
from importlib.metadata import version
from pathlib import Path

import pytest

from pipeline.config import STAGE_NAMES, Settings, load_settings
from pipeline.contracts.catalog import load_catalog
from pipeline.devstack.control import StartProgress, start_server, stop_server
from pipeline.devstack.worker_process import settings_env
from tests.stack.test_ticks_pipeline import produce
from tests.waiting import wait_until

pytestmark = pytest.mark.stack

#: A CLI failure must come within this long (a broker that is down is not waited for).
BOUNDED_S = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def closed_port() -> int:
    """A port nothing listens on (it was free a moment ago)."""
    return _free_port()


def cli(settings: Settings | None, *args: str, env: dict[str, str] | None = None, timeout: float = 120,
        python: list[str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``tickwire ARGS`` as from a script: stdout and stderr are pipes, no COLUMNS, only these settings."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("TICKWIRE_") and k != "COLUMNS"}
    return subprocess.run([*(python or [sys.executable, "-m", "pipeline"]), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd,
                          env={**base, **(settings_env(settings) if settings else {}), **(env or {})})


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def assert_one_line_failure(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """The command failed with ``code`` and exactly one line on stderr naming ``needles``; nothing on stdout."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    err = lines(result.stderr)
    assert len(err) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert "Traceback" not in result.stderr and "Unclosed" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in err[0], (needle, err[0])
    assert result.stdout.strip() == "", f"nothing on stdout on a failure, got:\n{result.stdout}"
    return err[0]


def own_settings(stack_settings: Settings, directory: Path, **overrides: object) -> Settings:
    """The session stack's settings with a chDB and state directory of this test's own."""
    return load_settings(**{**stack_settings.model_dump(), "clickhouse_dsn": f"chdb://{directory / 'clickhouse'}",
                            "state_dir": directory / "state", **overrides})


# -- failures: one line, a documented code, in bounded time -------------------------------------------------------


@pytest.mark.parametrize("command", [
    ["topics", "apply"],
    ["simulate", "--duration", "1", "--rate", "100"],
    ["replay", "--stages", "ingest"],
    ["dlq", "list"],
], ids=lambda command: " ".join(command[:2]))
def test_an_unreachable_broker_is_one_line_and_exit_1(stack_settings: Settings, tmp_path: Path, command: list[str]) -> None:
    settings = own_settings(stack_settings, tmp_path, broker_url=f"kafka://127.0.0.1:{closed_port()}")
    began = time.monotonic()
    result = cli(settings, *command)
    elapsed = time.monotonic() - began
    line = assert_one_line_failure(result, 1, "TICKWIRE_BROKER_URL", settings.broker_url)
    assert "Unable connect" not in line  # aiokafka's own log line stays off the terminal
    assert elapsed < BOUNDED_S, f"{command} took {elapsed:.0f} s to fail"


def test_a_bad_key_id_and_an_unknown_one(stack_settings: Settings) -> None:
    bad = cli(stack_settings, "keys", "revoke", "nonsense")
    assert_one_line_failure(bad, 2, "nonsense", "16 hex digits")
    unknown = cli(stack_settings, "keys", "revoke", uuid.uuid4().hex[:16])
    assert_one_line_failure(unknown, 1, "no key")


def test_a_wrong_setting_is_one_line_on_stderr_and_exit_2(tmp_path: Path) -> None:
    result = cli(None, "worker", env={"TICKWIRE_API_PORT": "abc", "TICKWIRE_STATE_DIR": str(tmp_path)})
    assert_one_line_failure(result, 2, "TICKWIRE_API_PORT")
    for command in (["topics", "apply"], ["sql", "SELECT 1"], ["config"], ["status", "--once"], ["stack", "status"]):
        again = cli(None, *command, env={"TICKWIRE_CACHE_URL": "http://nowhere", "TICKWIRE_STATE_DIR": str(tmp_path)})
        assert_one_line_failure(again, 2, "TICKWIRE_CACHE_URL")


def test_sql_errors_go_to_stderr_never_into_the_json_lines(stack_settings: Settings, tmp_path: Path) -> None:
    settings = own_settings(stack_settings, tmp_path)  # chDB of its own, no worker: the query runs in the command
    ok = cli(settings, "sql", "SELECT 1 AS n")
    assert ok.returncode == 0 and [json.loads(line) for line in lines(ok.stdout)] == [{"n": 1}], ok.stderr
    failed = cli(settings, "sql", "SELECT no_such_function_here()")
    assert_one_line_failure(failed, 1, "no_such_function_here")


# -- a chDB directory that a worker holds ---------------------------------------------------------------------------


def test_replay_and_sql_name_the_worker_that_holds_chdb(worker_factory) -> None:
    worker = worker_factory()
    held = worker.settings

    replay = cli(held, "replay", "--stages", "ingest")
    line = assert_one_line_failure(replay, 1, str(held.chdb_path), "stop it first", "ClickHouse server")
    assert "Code: " not in line and "BAD_ARGUMENTS" not in line

    # no worker answers where the command looks (another port): the query cannot run anywhere
    elsewhere = load_settings(**{**held.model_dump(), "api_port": closed_port()})
    sql = cli(elsewhere, "sql", "SELECT 1")
    line = assert_one_line_failure(sql, 1, str(held.chdb_path), "held by another process", elsewhere.api_url)
    assert "Code: " not in line and "Cannot lock" not in line

    through = cli(held, "sql", "SELECT 1 AS n")  # where the worker answers, it runs the query
    assert through.returncode == 0 and json.loads(through.stdout) == {"n": 1}, through.stderr


# -- --debug, --version -----------------------------------------------------------------------------------------------

BOOM = """
import sys
import click
from pipeline.cli.console import run
from pipeline.cli.main import cli

@cli.command("boom")
def boom() -> None:
    raise RuntimeError("the unexpected\\nin two lines")

@cli.command("leak")
def leak() -> None:
    raise ValueError("cannot use postgresql://tickwire:hunter2-in-url@db:5432/x")

sys.exit(run(cli))
"""


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback() -> None:
    quiet = cli(None, "boom", python=[sys.executable, "-c", BOOM])
    assert_one_line_failure(quiet, 1, "unexpected error: RuntimeError: the unexpected in two lines", "--debug")
    loud = cli(None, "--debug", "boom", python=[sys.executable, "-c", BOOM])
    assert loud.returncode == 1
    assert "Traceback (most recent call last)" in loud.stderr and ", in boom\nRuntimeError: the unexpected" in loud.stderr
    assert lines(loud.stderr)[-1] == "unexpected error: RuntimeError: the unexpected in two lines"
    for args in (["leak"], ["--debug", "leak"]):  # a password in an error's text is masked, traceback included
        leak = cli(None, *args, python=[sys.executable, "-c", BOOM])
        assert leak.returncode == 1 and "hunter2" not in leak.stderr and "tickwire:***@db" in leak.stderr, leak.stderr


def test_version_names_the_package_and_python() -> None:
    result = cli(None, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"tickwire {version('tickwire')} (Python {platform.python_version()})"


def test_help_documents_the_exit_codes() -> None:
    for command in ([], ["replay"], ["topics", "apply"], ["keys", "list"], ["status"], ["config"], ["dlq", "list"]):
        result = cli(None, *command, "--help")
        assert result.returncode == 0 and "Exit codes: 0" in result.stdout, (command, result.stdout)
    assert "130 interrupted" in cli(None, "--help").stdout and "3 drift" in cli(None, "topics", "apply", "--help").stdout


# -- config -----------------------------------------------------------------------------------------------------------


def test_config_shows_every_setting_with_its_source_and_masks_secrets(tmp_path: Path) -> None:
    cache_secret, dsn_secret = "c" + secrets.token_hex(12), "p" + secrets.token_hex(12)
    env = {"TICKWIRE_STATE_DIR": str(tmp_path), "TICKWIRE_CACHE_PASSWORD": cache_secret,
           "TICKWIRE_POSTGRES_DSN": f"postgresql://tickwire:{dsn_secret}@127.0.0.1:5432/tickwire?sslmode=disable"}
    table = cli(None, "config", env=env, cwd=tmp_path)  # no .env there
    as_json = cli(None, "config", "--json", env=env, cwd=tmp_path)
    for result in (table, as_json):
        assert result.returncode == 0, result.stderr
        assert cache_secret not in result.stdout + result.stderr and dsn_secret not in result.stdout + result.stderr
    shown = json.loads(as_json.stdout)
    assert set(shown) == {f"TICKWIRE_{name.upper()}" for name in Settings.model_fields}
    assert shown["TICKWIRE_CACHE_PASSWORD"] == {"value": "***", "source": "environment"}
    assert shown["TICKWIRE_POSTGRES_DSN"]["value"] == "postgresql://tickwire:***@127.0.0.1:5432/tickwire?sslmode=disable"
    assert shown["TICKWIRE_API_PORT"] == {"value": 6066, "source": "default"}
    assert shown["TICKWIRE_GRAPH_PASSWORD"] == {"value": None, "source": "default"}
    for name in shown:  # the table is not cut when piped: every variable and its whole masked DSN
        assert name in table.stdout
    assert shown["TICKWIRE_POSTGRES_DSN"]["value"] in table.stdout


# -- listings: --json, and tables whole when piped ------------------------------------------------------------------


def test_listings_have_json_and_are_not_cut_when_piped(stack_settings: Settings) -> None:
    tenant = "t" + uuid.uuid4().hex + "-" + uuid.uuid4().hex[:20]  # 53 characters: a row wider than 80 columns
    assert cli(stack_settings, "tenants", "add", tenant).returncode == 0
    created = cli(stack_settings, "keys", "create", "--tenant", tenant)
    assert created.returncode == 0, created.stderr
    key_id = created.stdout.strip().split("_")[1]

    table = cli(stack_settings, "keys", "list", "--tenant", tenant)
    assert table.returncode == 0, table.stderr
    (row,) = [line for line in table.stdout.splitlines() if key_id in line]
    assert tenant in row and len(row) > 80, table.stdout
    (listed,) = [json.loads(line) for line in lines(cli(stack_settings, "keys", "list", "--tenant", tenant, "--json").stdout)]
    assert listed["key_id"] == key_id and listed["tenant"] == tenant and listed["revoked_at"] is None
    assert set(listed) == {"key_id", "tenant", "scope", "created_at", "revoked_at"}
    tenants = [json.loads(line) for line in lines(cli(stack_settings, "tenants", "list", "--json").stdout)]
    mine = next(t for t in tenants if t["tenant"] == tenant)
    assert mine["active_keys"] == 1 and set(mine) == {"tenant", "created_at", "active_keys"}

    status = cli(stack_settings, "stack", "status")
    assert status.returncode == 0, status.stderr
    assert stack_settings.postgres_dsn in status.stdout, status.stdout  # the whole address, not "postgresql://…"
    servers = [json.loads(line) for line in lines(cli(stack_settings, "stack", "status", "--json").stdout)]
    assert [s["server"] for s in servers] == ["broker", "cache", "postgres", "graph"]
    assert all(s["answering"] and s["latency_ms"] is not None for s in servers)

    applied = cli(stack_settings, "topics", "apply", "--json")
    assert applied.returncode == 0, applied.stderr
    states = [json.loads(line) for line in lines(applied.stdout)]
    assert {s["topic"] for s in states} == {t.name for t in load_catalog(stack_settings.topics_file).topics}
    assert {s["state"] for s in states} <= {"ok", "created"}


def test_replay_json_report(stack_settings: Settings, tenant: str, tmp_path: Path) -> None:
    ticks = [dict(tenant=tenant, broker="demo", symbol="EURUSD", time_msc=1_700_000_000_000 + i, bid=1.1, ask=1.2)
             for i in range(25)]
    asyncio.run(produce(stack_settings, ticks))
    settings = own_settings(stack_settings, tmp_path)
    result = cli(settings, "replay", "--stages", "ingest", "--tenant", tenant, "--sinks", "analytics", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["complete"] is True and report["resumed"] is False
    (stage,) = report["stages"]
    assert stage["stage"] == "ingest" and stage["records"] >= len(ticks) and stage["failed"] == 0


# -- status -----------------------------------------------------------------------------------------------------------


def test_status_shows_every_stage_of_a_running_worker(stack_settings: Settings, worker_factory, tenant: str) -> None:
    worker = worker_factory()
    ticks = [dict(tenant=tenant, broker="demo", symbol="EURUSD", time_msc=1_700_000_000_000 + i, bid=1.1, ask=1.2)
             for i in range(40)]
    asyncio.run(produce(stack_settings, ticks))

    def snapshot() -> dict | None:
        result = cli(worker.settings, "status", "--once", "--json", "--interval", "0.3")
        assert result.returncode == 0, result.stderr
        view = json.loads(result.stdout)
        return view if view["stages"]["ingest"]["consumed"] >= len(ticks) else None

    view = wait_until(snapshot, timeout_s=60, what="the worker's ingest stage to count the ticks")
    assert set(view["stages"]) == set(STAGE_NAMES) and view["url"] == worker.settings.api_url
    for name, stage in view["stages"].items():
        assert stage["state"] in ("starting", "running", "paused", "stalled"), (name, stage)
        assert isinstance(stage["lag"]["records"], int) and isinstance(stage["circuits"], dict) and stage["circuits"]
        assert isinstance(stage["records_per_s"], (int, float)) and stage["records_per_s"] >= 0
    assert set(view["dependencies"]) >= {"broker", "clickhouse", "cache", "postgres"}

    table = cli(worker.settings, "status", "--once", "--interval", "0.3")
    assert table.returncode == 0, table.stderr
    assert all(name in table.stdout for name in STAGE_NAMES) and "rec/s" in table.stdout
    top = cli(worker.settings, "top", "--once", "--interval", "0.3")
    assert top.returncode == 0 and all(name in top.stdout for name in STAGE_NAMES), top.stderr


def test_status_without_a_worker_names_the_port(tmp_path: Path) -> None:
    port = closed_port()
    result = cli(None, "status", "--once", env={"TICKWIRE_API_PORT": str(port), "TICKWIRE_STATE_DIR": str(tmp_path)})
    assert_one_line_failure(result, 1, "TICKWIRE_API_PORT", f"http://127.0.0.1:{port}")


# -- stack up/start: progress per server ------------------------------------------------------------------------------


def test_starting_a_server_reports_each_step(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path / "state", cache_url=f"redis://127.0.0.1:{_free_port()}/0")
    events: list[StartProgress] = []
    try:
        report = start_server(settings, "cache", timeout=30, on_progress=events.append)
        assert report.outcome == "started"
        assert [e.step for e in events] == ["checking", "starting", "waiting", "setting up", "done"]
        assert events[-1].report == report and all(e.name == "cache" for e in events)
        assert [e.seconds for e in events] == sorted(e.seconds for e in events)

        again: list[StartProgress] = []
        start_server(settings, "cache", on_progress=again.append)
        assert again[-1].report is not None and again[-1].report.outcome == "already running"

        shown = cli(settings, "stack", "start", "cache", "--json")  # the CLI: a JSON line per server
        assert shown.returncode == 0, shown.stderr
        (line,) = [json.loads(line) for line in lines(shown.stdout)]
        assert line["server"] == "cache" and line["result"] == "already running" and line["pid"] == report.pid
    finally:
        stop_server(settings, "cache")
