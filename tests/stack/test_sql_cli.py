"""``tickwire sql``: read-only, through the worker that owns chDB, or directly when none runs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import orjson
import pytest

from pipeline.devstack.worker_process import settings_env
from pipeline.ops.sql_client import SqlError, run_sql, worker_query
from tests.stack.test_ticks_pipeline import produce
from tests.waiting import wait_until

pytestmark = pytest.mark.stack


def cli_sql(settings, query: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "sql", query], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **settings_env(settings)})


def test_sql_goes_through_the_running_worker_and_is_read_only(stack_settings, worker_factory, tenant, tmp_path):
    worker = worker_factory()
    asyncio.run(produce(stack_settings, [dict(tenant=tenant, broker="demo", symbol="EURUSD", time_msc=1, bid=1.0, ask=1.1)]))
    query = f"SELECT count() AS n FROM tickwire.ticks FINAL WHERE tenant = '{tenant}'"
    wait_until(lambda: orjson.loads(worker_query(worker.settings, query)[0])["n"] == 1, timeout_s=30, what="the tick")
    result = cli_sql(worker.settings, query)  # chDB is locked by the worker: only the worker can answer
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout.strip()) == {"n": 1}

    refused = cli_sql(worker.settings, "INSERT INTO tickwire.ticks (tenant) VALUES ('x')")
    assert refused.returncode == 1 and "readonly" in (refused.stdout + refused.stderr).lower()
    forged = tmp_path / "forged"
    forged.mkdir()
    (forged / "worker.token").write_text("not-the-token")
    with pytest.raises(SqlError, match="operator token required"):
        list(run_sql(worker.settings.model_copy(update={"state_dir": forged}), "SELECT 1"))


def test_sql_opens_the_data_directly_when_no_worker_runs(stack_settings, worker_factory, tenant):
    worker = worker_factory()
    asyncio.run(produce(stack_settings, [dict(tenant=tenant, broker="demo", symbol="EURUSD", time_msc=1, bid=1.0, ask=1.1)]))
    query = f"SELECT count() AS n FROM tickwire.ticks FINAL WHERE tenant = '{tenant}'"
    wait_until(lambda: orjson.loads(worker_query(worker.settings, query)[0])["n"] == 1, timeout_s=30, what="the tick")
    worker.stop()
    result = cli_sql(worker.settings, query)
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout.strip()) == {"n": 1}
