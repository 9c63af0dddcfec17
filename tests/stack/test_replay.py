"""Replay: into empty stores it rebuilds what the live pipeline built; twice equals once; resumable."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import orjson
import pytest
import redis
from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.config import Settings, load_settings
from pipeline.contracts.topics import TICKS_TOPIC
from pipeline.devstack.worker_process import settings_env
from pipeline.ops.replay import Bound, ReplayError, ReplayPlan, progress_path
from pipeline.ops.sql_client import worker_query
from tests.stack.test_ticks_pipeline import make_ticks, produce
from tests.waiting import wait_until

pytestmark = pytest.mark.stack

MINUTE = 60_000


def run(settings: Settings, *args: str, timeout_s: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, timeout=timeout_s,
                          env={**os.environ, **settings_env(settings)})


def rows(settings: Settings, sql: str) -> list[dict]:
    """Query a chDB directory that no worker holds (opened in a child process: one engine per process)."""
    result = run(settings, "sql", sql)
    assert result.returncode == 0, result.stderr
    return [orjson.loads(line) for line in result.stdout.splitlines()]


def snapshot(settings: Settings, tenant: str, cache_db: int) -> dict:
    cache = redis.Redis.from_url(settings.cache_connection_url.rsplit("/", 1)[0] + f"/{cache_db}", decode_responses=True)
    return {
        "ticks": rows(settings, f"SELECT count() AS n, uniqExact(symbol, time) AS u FROM tickwire.ticks FINAL WHERE tenant = '{tenant}'"),
        "candles": rows(settings, "SELECT symbol, timeframe, toUnixTimestamp64Milli(start) AS s, open, high, low, close, ticks, "
                        f"volume FROM tickwire.candles FINAL WHERE tenant = '{tenant}' ORDER BY symbol, timeframe, s"),
        "hot": {key.split(":", 2)[2]: {k: v for k, v in cache.hgetall(key).items() if k != "offset"}
                for key in cache.scan_iter(match=f"tw:{tenant}:tick:*")},
    }


async def committed(settings: Settings, group: str) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(TICKS_TOPIC, p)) for p in sorted(consumer.partitions_for_topic(TICKS_TOPIC))}
    finally:
        await consumer.stop()


def test_replay_into_empty_stores_equals_live_and_twice_equals_once(stack_settings, worker_factory, tenant, tmp_path):
    ticks = make_ticks([tenant], ["EURUSD", "XAUUSD", "US30"], per_key=1_500)
    for tick in ticks:  # spread over ~25 minutes of event time so that bars close
        tick["time_msc"] = 1_763_899_200_000 + (tick["time_msc"] - 1_763_900_000_000) * 100
    worker = worker_factory(candle_timeframes="1m,5m")
    asyncio.run(produce(stack_settings, ticks))
    query = f"SELECT count() AS n FROM tickwire.ticks FINAL WHERE tenant = '{tenant}'"
    wait_until(lambda: orjson.loads(worker_query(worker.settings, query)[0])["n"] == len(ticks), timeout_s=60, what="live")
    worker.stop()
    live = snapshot(worker.settings, tenant, cache_db=0)
    assert live["ticks"][0]["n"] == len(ticks) and len(live["candles"]) > 20
    live_offsets = asyncio.run(committed(stack_settings, worker.settings.group_id + ".ingest"))

    # empty stores: a new chDB directory and another cache database
    replay_settings = load_settings(**{**worker.settings.model_dump(), "clickhouse_dsn": f"chdb://{tmp_path / 'replayed'}",
                                       "cache_url": stack_settings.cache_url.rsplit("/", 1)[0] + "/1",
                                       "candle_timeframes": "1m,5m"})
    redis.Redis.from_url(replay_settings.cache_connection_url).flushdb()
    result = run(replay_settings, "replay", "--stages", "ingest", "--tenant", tenant, "--sinks", "analytics,cache")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "finished" in result.stdout
    replayed = snapshot(replay_settings, tenant, cache_db=1)
    assert replayed == live

    again = run(replay_settings, "replay", "--stages", "ingest", "--tenant", tenant, "--sinks", "analytics,cache", "--fresh")
    assert again.returncode == 0, again.stdout + again.stderr
    assert snapshot(replay_settings, tenant, cache_db=1) == live
    raw_ticks = rows(replay_settings, f"SELECT count() AS n FROM tickwire.ticks FINAL WHERE tenant = '{tenant}'")
    assert raw_ticks == [{"n": len(ticks)}]
    assert asyncio.run(committed(stack_settings, worker.settings.group_id + ".ingest")) == live_offsets, "the live group never moves"


def test_replay_stops_cleanly_and_resumes(stack_settings, tenant, tmp_path):
    ticks = make_ticks([tenant], [f"S{i}" for i in range(10)], per_key=4_000)
    asyncio.run(produce(stack_settings, ticks))
    settings = load_settings(**{**stack_settings.model_dump(), "clickhouse_dsn": f"chdb://{tmp_path / 'resumed'}",
                                "state_dir": tmp_path / "state", "fetch_max_records": 50})
    args = ["replay", "--stages", "ingest", "--tenant", tenant, "--sinks", "analytics"]
    child = subprocess.Popen([sys.executable, "-m", "pipeline", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env={**os.environ, **settings_env(settings)})
    plan = ReplayPlan(("ingest",), None, None, frozenset({tenant}), frozenset(), frozenset({"analytics"}))
    progress_file = progress_path(settings, plan)
    try:
        wait_until(progress_file.exists, timeout_s=60, what="a first checkpoint")
        child.send_signal(signal.SIGINT)
        output, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    state = orjson.loads(progress_file.read_text())
    if child.returncode == 0:
        pytest.skip("the replay finished before it could be interrupted")  # too fast on this machine: nothing to resume
    assert child.returncode == 130 and "resume" in output and not state["complete"]

    resumed = run(settings, *args)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed and finished" in resumed.stdout
    assert rows(settings, f"SELECT count() AS n FROM tickwire.ticks FINAL WHERE tenant = '{tenant}'") == [{"n": len(ticks)}]


@pytest.mark.parametrize(("text", "expected"), [
    ("0:5,3:7", Bound(offsets=((0, 5), (3, 7)))),
    ("1700000000000", Bound(timestamp_ms=1_700_000_000_000)),
    ("2023-11-14T22:13:20Z", Bound(timestamp_ms=1_700_000_000_000)),
    ("2023-11-14T22:13:20", Bound(timestamp_ms=1_700_000_000_000)),
])
def test_range_bounds_parse(text, expected):
    assert Bound.parse(text) == expected


def test_a_bad_bound_or_role_is_a_clear_error():
    with pytest.raises(ReplayError, match="bad range bound"):
        Bound.parse("yesterday")
    with pytest.raises(ReplayError, match="--sinks"):
        ReplayPlan(("ingest",), roles=frozenset({"everything"}))
