"""``tickwire dlq list|show|retry``: inspect dead letters and re-submit them after a fix."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import orjson
import pytest

from pipeline.devstack.worker_process import settings_env
from pipeline.ingest.producer import encode_tick
from pipeline.ops.sql_client import worker_query
from tests.test_ticks_pipeline import produce
from tests.waiting import wait_until

pytestmark = pytest.mark.stack


def cli(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **settings_env(settings), "COLUMNS": "250"})


def test_a_dead_letter_is_listed_shown_and_stored_once_retried_after_the_fix(stack_settings, worker_factory, tenant):
    # a valid tick padded with whitespace to 600 bytes: oversize for a worker that accepts 400
    padded = encode_tick(tenant=tenant, broker="demo", symbol="EURUSD", time_msc=1_763_900_000_000, bid=1.1, ask=1.2)
    padded = padded[:-1] + b" " * (600 - len(padded)) + b"}"
    strict = worker_factory(max_record_bytes=400)
    asyncio.run(produce(stack_settings, [], raw=[(f"{tenant}:demo:EURUSD".encode(), padded)]))

    listed = wait_until(lambda: tenant in (out := cli(stack_settings, "dlq", "list", "--reason", "oversize").stdout) and out,
                        timeout_s=30, what="the dead letter in the list")
    line = next(line for line in listed.splitlines() if tenant in line)
    position = line.split("│")[1].strip()
    shown = cli(stack_settings, "dlq", "show", position)
    assert shown.returncode == 0 and '"reason": "oversize"' in shown.stdout and tenant in shown.stdout

    count = f"SELECT count() AS n FROM tickwire.ticks FINAL WHERE tenant = '{tenant}'"
    assert orjson.loads(worker_query(strict.settings, count)[0])["n"] == 0
    strict.stop()
    relaxed = worker_factory(max_record_bytes=65_536)  # the fix
    for _ in range(2):  # retrying twice stores it once
        retried = cli(stack_settings, "dlq", "retry", "--position", position)
        assert retried.returncode == 0 and "re-submitted 1" in retried.stdout
    wait_until(lambda: orjson.loads(worker_query(relaxed.settings, count)[0])["n"] == 1, timeout_s=30, what="the retried tick")
