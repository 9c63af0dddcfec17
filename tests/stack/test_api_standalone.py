"""``tickwire api``: the API as its own process (its own connections, no consumer). With chDB it serves what a
worker stored once that worker stopped, and refuses in one line a directory a worker holds (the worker serves the
API then)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from pipeline.config import Settings
from pipeline.devstack.worker_process import settings_env
from tests.api_support import ApiClient, free_port, issue_key, produce_ticks, series_ticks, start_api_worker
from tests.waiting import wait_until

pytestmark = pytest.mark.stack


def test_tickwire_api_refuses_in_one_line_a_chdb_directory_a_worker_holds(stack_settings: Settings, tmp_path) -> None:
    worker = start_api_worker(stack_settings, tmp_path / "worker")
    try:
        settings = worker.settings.model_copy(update={"api_port": free_port()})
        result = subprocess.run([sys.executable, "-m", "pipeline", "api"], capture_output=True, text=True, timeout=60,
                                env={**os.environ, **settings_env(settings), "COLUMNS": "80"})
        assert worker.running() and ApiClient(worker.settings.api_url).get("/health").status == 200
    finally:
        worker.stop()
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    (line,) = lines
    assert line.startswith("tickwire api: ") and "chDB" in line and str(settings.chdb_path) in line and "worker" in line


def test_standalone_server_serves_what_a_worker_stored(stack_settings: Settings, tmp_path, tenant: str) -> None:
    worker = start_api_worker(stack_settings, tmp_path / "worker")
    key = issue_key(stack_settings, tenant).key
    ticks = series_ticks(tenant, "demo", "EURUSD", [1.1, 1.2, 1.3])
    asyncio.run(produce_ticks(stack_settings, ticks))
    stored = ApiClient(worker.settings.api_url, key)
    wait_until(lambda: len(stored.data("/v1/ticks", symbol="EURUSD")) == len(ticks), timeout_s=60, what="the ticks")
    worker.stop()  # releases the chDB directory

    settings = worker.settings.model_copy(update={"api_port": free_port()})
    log = open(tmp_path / "api.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "pipeline", "api"], env={**os.environ, **settings_env(settings)},
                              stdout=log, stderr=subprocess.STDOUT)  # on the chDB directory the worker left
    try:
        client = ApiClient(settings.api_url, key)

        def healthy() -> bool:
            try:
                return client.get("/health").status == 200
            except OSError:
                return False

        wait_until(healthy, timeout_s=60, what="the standalone API")
        health = client.get("/health").body
        assert health["stages"] is None and health["dependencies"]["broker"]["required"] is False
        rows = client.data("/v1/ticks", symbol="EURUSD", limit=1000)
        assert [r["time_msc"] for r in rows] == sorted((t["time_msc"] for t in ticks), reverse=True)
        assert client.data("/v1/candles", symbol="EURUSD", timeframe="1m")
        assert client.get("/metrics").status == 200
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
        log.close()
    assert code == 0, (tmp_path / "api.log").read_text()
