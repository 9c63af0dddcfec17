"""Fault containment: no record, store or query may stop other tenants or other stages.

Each hostile case is mixed with valid ticks of other tenants, and each test asserts that every valid tick is
stored exactly once, the hot keys are the newest, the worker is up, and the hostile record is in the DLQ with
its reason and stage. Store outages pause only the stage that writes the store. Real local stack throughout.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import subprocess
import sys
import threading
import time
import urllib.request

import asyncpg
import orjson
import pytest
import redis
from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.contracts.topics import TICKS_TOPIC
from pipeline.devstack import start_server, stop_server
from pipeline.devstack.worker_process import settings_env
from pipeline.ingest.producer import MT5Producer, encode_tick
from pipeline.ops.sql_client import worker_query
from tests.api_support import issue_key
from tests.stack.test_ticks_pipeline import BASE_MS, make_ticks, newest_per_key
from tests.topic_reader import read_topic
from tests.waiting import wait_until

pytestmark = pytest.mark.stack

MINUTE = 60_000
T0 = 1_763_899_200_000


def scalar(worker, sql: str) -> int:
    lines = worker_query(worker.settings, sql)
    assert lines is not None, "worker did not answer"
    return int(next(iter(orjson.loads(lines[0]).values())))


def stored(worker, tenants: list[str]) -> int:
    names = ",".join(f"'{t}'" for t in tenants)
    return scalar(worker, f"SELECT count() FROM tickwire.ticks FINAL WHERE tenant IN ({names})")


def health(worker) -> dict:
    request = urllib.request.Request(worker.settings.api_url + "/health")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return orjson.loads(exc.read())


async def send(settings, records: list[tuple[bytes, bytes]]) -> None:
    async with MT5Producer(settings, validate=False) as producer:
        for key, value in records:
            await producer.send_raw(TICKS_TOPIC, key, value)


def tick_records(ticks: list[dict]) -> list[tuple[bytes, bytes]]:
    return [(f"{t['tenant']}:{t['broker']}:{t['symbol']}".encode(), encode_tick(**t)) for t in ticks]


def letters_of(settings, key_prefix: bytes, expected: int) -> list[dict]:
    return [orjson.loads(value) for _, value in
            asyncio.run(read_topic(settings, "dlq.v1", key_prefix, expected, timeout_s=30))]


def assert_hot_keys_newest(settings, ticks: list[dict]) -> None:
    cache = redis.Redis.from_url(settings.cache_connection_url, decode_responses=True)
    for key, tick in newest_per_key(ticks).items():
        assert int(cache.hget(key, "time_msc")) == tick["time_msc"], key


def mixed_run(settings, worker, tenant: str, hostile: list[tuple[bytes, bytes]], reasons: list[str]) -> list[dict]:
    """Hostile records (keyed with ``tenant``) interleaved with valid ticks of two other tenants: every valid tick
    stored once, hot keys newest, the worker up, and each hostile record dead-lettered with its reason."""
    others = [tenant + "ok1", tenant + "ok2"]
    valid = make_ticks(others, ["EURUSD", "XAUUSD"], per_key=300)
    records = tick_records(valid)
    step = max(1, len(records) // (len(hostile) + 1))
    for i, item in enumerate(hostile):
        records.insert((i + 1) * step, item)
    asyncio.run(send(settings, records))
    wait_until(lambda: stored(worker, others) == len(valid), timeout_s=90, what=f"{len(valid)} valid ticks of other tenants")
    letters = letters_of(settings, tenant.encode(), len(hostile))
    assert sorted(letter["reason"] for letter in letters) == sorted(reasons)
    assert all(letter["stage"] == "ingest" and letter["topic"] == TICKS_TOPIC for letter in letters)
    assert_hot_keys_newest(settings, valid)
    assert worker.running() and health(worker)["stages"]["ingest"]["state"] == "running"
    assert stored(worker, [tenant]) == 0
    return letters


@pytest.fixture(scope="module")
def hostile_worker(stack_settings, tmp_path_factory):
    from tests.conftest import start_worker

    worker = start_worker(stack_settings, tmp_path_factory.mktemp("hostile"), "hostile-" + os.urandom(4).hex(), "worker.log",
                          candle_timeframes="1m")
    yield worker
    worker.stop()


def valid_value(tenant: str, i: int = 0, **fields) -> bytes:
    tick = dict(tenant=tenant, broker="demo", symbol="EURUSD", time_msc=BASE_MS + i, bid=1.1, ask=1.2, flags=6)
    tick.update(fields)
    return encode_tick(**tick)


def test_invalid_utf8_surrogates_and_overlong_encodings_are_dead_lettered(stack_settings, hostile_worker, tenant):
    key = f"{tenant}:demo:EURUSD".encode()
    value = valid_value(tenant)
    hostile = [
        value.replace(b'"demo"', b'"de\xffmo"'),             # invalid UTF-8 in a string (80 bytes: the reported case)
        value.replace(b'"broker"', b'"bro\xfeker"'),         # invalid UTF-8 in a field name
        value.replace(b'"demo"', b'"de\\ud800mo"'),          # a lone surrogate escape
        value.replace(b'"demo"', b'"de\xed\xa0\x80mo"'),     # a surrogate encoded in UTF-8
        value.replace(b'"demo"', b'"de\xc0\xafmo"'),         # an overlong encoding
    ]
    letters = mixed_run(stack_settings, hostile_worker, tenant, [(key, v) for v in hostile], ["malformed_json"] * 5)
    assert sorted(base64.b64decode(letter["value_b64"]) for letter in letters) == sorted(hostile)


def test_subnormal_out_of_range_and_crossed_prices_are_dead_lettered(stack_settings, hostile_worker, tenant):
    key = f"{tenant}:demo:EURUSD".encode()
    hostile = [valid_value(tenant, bid=5e-324, ask=5e-324), valid_value(tenant, 1, bid=1e-12, ask=1.0),
               valid_value(tenant, 2, bid=1.3, ask=1.2), valid_value(tenant, 3, last=1e-300)]
    letters = mixed_run(stack_settings, hostile_worker, tenant, [(key, v) for v in hostile],
                        ["crossed_quote", "price_out_of_range", "price_out_of_range", "price_out_of_range"])
    assert any("5e-324" in letter["error"] for letter in letters)


def test_a_record_keyed_for_one_tenant_with_another_in_its_body_and_duplicate_keys_are_dead_lettered(
        stack_settings, hostile_worker, tenant):
    victim = tenant + "victim"
    smuggled = valid_value(victim)  # keyed as ``tenant``, body says ``victim``
    twice = valid_value(tenant).replace(b'"flags":6', b'"tenant":"' + victim.encode() + b'"')
    letters = mixed_run(stack_settings, hostile_worker, tenant,
                        [(f"{tenant}:demo:EURUSD".encode(), smuggled), (f"{tenant}:demo:EURUSD".encode(), twice)],
                        ["duplicate_key", "key_mismatch"])
    assert stored(hostile_worker, [victim]) == 0
    assert any("tenant" in letter["error"] for letter in letters if letter["reason"] == "duplicate_key")


def test_a_tick_from_the_future_is_dead_lettered_and_pins_neither_hot_key_nor_bars(stack_settings, hostile_worker, tenant):
    key = f"{tenant}:demo:EURUSD".encode()
    now = int(time.time() * 1000) - 10 * MINUTE
    first = [dict(tenant=tenant, broker="demo", symbol="EURUSD", time_msc=now + i * 1_000, bid=1.1, ask=1.2, flags=6)
             for i in range(3)]
    later = [dict(t, time_msc=t["time_msc"] + 2 * MINUTE) for t in first]  # closes the first minute's bar
    year_2100 = valid_value(tenant, time_msc=4_102_000_000_000)
    asyncio.run(send(stack_settings, tick_records(first) + [(key, year_2100)] + tick_records(later)))
    wait_until(lambda: stored(hostile_worker, [tenant]) == 6, timeout_s=60, what="the six real ticks")
    (letter,) = letters_of(stack_settings, key, 1)
    assert letter["reason"] == "future_time" and "UTC" in letter["error"]
    assert_hot_keys_newest(stack_settings, first + later)
    bars = f"SELECT count() FROM tickwire.candles FINAL WHERE tenant = '{tenant}'"
    wait_until(lambda: scalar(hostile_worker, bars) == 1, timeout_s=30, what="the first minute's bar, closed by later ticks")


def test_a_huge_record_is_dead_lettered_by_reference_and_stops_nobody(stack_settings, hostile_worker, tenant):
    key = f"{tenant}:demo:EURUSD".encode()
    huge = b'{"v":1,"tenant":"' + tenant.encode() + b'","pad":"' + b"x" * 6_500_000 + b'"}'
    (letter,) = mixed_run(stack_settings, hostile_worker, tenant, [(key, huge)], ["oversize"])
    assert letter["value_truncated"] is True and letter["value_size"] == len(huge)
    assert letter["value_sha256"] == hashlib.sha256(huge).hexdigest()
    assert base64.b64decode(letter["value_b64"]) == huge[:4096]
    assert len(orjson.dumps(letter)) <= hostile_worker.settings.dlq_max_envelope_bytes
    assert asyncio.run(record_at(stack_settings, letter["topic"], letter["partition"], letter["offset"])) == huge


async def record_at(settings, topic: str, partition: int, offset: int) -> bytes | None:
    """The value of one record, read from its source (what ``tickwire dlq show`` does for a truncated letter)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None, enable_auto_commit=False,
                                max_partition_fetch_bytes=16 << 20, fetch_max_bytes=16 << 20)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        async with asyncio.timeout(30):
            while True:
                for record in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                    if record.offset == offset:
                        return record.value
    finally:
        await consumer.stop()


def test_a_refused_operator_write_leaves_ingestion_writable(stack_settings, hostile_worker, tenant):
    refused = subprocess.run(
        [sys.executable, "-m", "pipeline", "sql", f"INSERT INTO tickwire.ticks (tenant) VALUES ('{tenant}')"],
        capture_output=True, text=True, timeout=60, env={**os.environ, **settings_env(hostile_worker.settings)})
    assert refused.returncode != 0 and "readonly" in (refused.stdout + refused.stderr).lower()
    ticks = make_ticks([tenant], ["EURUSD", "GBPUSD"], per_key=200)
    asyncio.run(send(stack_settings, tick_records(ticks)))
    wait_until(lambda: stored(hostile_worker, [tenant]) == len(ticks), timeout_s=60, what="ticks after the refused write")


def test_an_operator_sleep_delays_neither_the_latest_tick_nor_ingestion(stack_settings, hostile_worker, tenant):
    key = issue_key(stack_settings, tenant).key
    first = dict(tenant=tenant, broker="demo", symbol="EURUSD", time_msc=BASE_MS, bid=1.1, ask=1.2, flags=6)
    asyncio.run(send(stack_settings, tick_records([first])))
    wait_until(lambda: stored(hostile_worker, [tenant]) == 1, timeout_s=60, what="the first tick")
    sleeping = threading.Thread(target=lambda: worker_query(
        hostile_worker.settings, "SELECT sleepEachRow(1) FROM numbers(6) SETTINGS max_block_size = 1"))
    started = time.monotonic()
    sleeping.start()
    try:
        time.sleep(0.5)  # let the operator query reach the store (what is measured is the waiting below)
        slowest = 0.0
        for _ in range(10):
            began = time.monotonic()
            request = urllib.request.Request(
                f"{hostile_worker.settings.api_url}/v1/ticks/latest?symbol=EURUSD&broker=demo",
                headers={"Authorization": f"Bearer {key}"})
            with urllib.request.urlopen(request, timeout=10) as response:
                assert orjson.loads(response.read())["data"][0]["time_msc"] == BASE_MS
            slowest = max(slowest, time.monotonic() - began)
        more = make_ticks([tenant], ["GBPUSD"], per_key=100)
        asyncio.run(send(stack_settings, tick_records(more)))
        wait_until(lambda: stored(hostile_worker, [tenant]) == 1 + len(more), timeout_s=5, what="ticks stored meanwhile")
        assert sleeping.is_alive(), "the operator query was still running while all of this happened"
        assert slowest < 1.0, f"/v1/ticks/latest took {slowest:.2f} s while an operator query slept"
    finally:
        sleeping.join(timeout=30)
    assert time.monotonic() - started >= 5.5, "the operator query really slept"


def test_rows_a_store_refuses_are_dead_lettered_and_the_others_stored(stack_settings, hostile_worker, tenant):
    """ClickHouse refuses some rows (a constraint): they alone go to the DLQ, the stage goes on."""
    worker_query(hostile_worker.settings,
                 f"ALTER TABLE tickwire.ticks ADD CONSTRAINT no_poison_{tenant} CHECK NOT (tenant = '{tenant}' AND bid = 1.23456)",
                 write=True)
    try:
        key = f"{tenant}:demo:EURUSD".encode()
        poison = [valid_value(tenant, i, bid=1.23456, ask=1.3) for i in range(3)]
        letters = mixed_run(stack_settings, hostile_worker, tenant, [(key, v) for v in poison], ["store_rejected"] * 3)
        assert all("clickhouse.ticks" in letter["error"] and "VIOLATED_CONSTRAINT" in letter["error"] for letter in letters)
        assert not health(hostile_worker)["stages"]["ingest"]["paused_by"]
    finally:
        worker_query(hostile_worker.settings, f"ALTER TABLE tickwire.ticks DROP CONSTRAINT no_poison_{tenant}", write=True)


# --- store outages: only the stage that writes the store pauses ------------------------------------------------

def minutes(tenant: str, first: int, last: int) -> list[dict]:
    """Three ticks a minute of EURUSD and XAUUSD (a random walk), minutes [first, last)."""
    import random

    rng = random.Random(first)
    out = []
    for symbol, base in (("EURUSD", 1.08), ("XAUUSD", 2650.0)):
        for m in range(first, last):
            for s in (5, 35, 55):
                price = base * (1 + rng.gauss(0, 1e-3))
                out.append(dict(tenant=tenant, broker="demo", symbol=symbol, time_msc=T0 + m * MINUTE + s * 1000,
                                bid=round(price, 5), ask=round(price * 1.0001, 5), flags=6))
    return out


async def pattern_count(settings, tenant: str) -> int:
    connection = await asyncpg.connect(settings.postgres_connection_dsn)
    try:
        return await connection.fetchval("SELECT count(*) FROM patterns WHERE tenant = $1", tenant)
    finally:
        await connection.close()


def candles(worker, tenant: str) -> int:
    return scalar(worker, f"SELECT count() FROM tickwire.candles FINAL WHERE tenant = '{tenant}'")


def logged(worker, text: str) -> bool:
    return text in worker.log_file.read_text(errors="replace")


def test_a_vector_store_outage_pauses_only_the_patterns_stage(stack_settings, worker_factory, tenant):
    worker = worker_factory(candle_timeframes="1m", pattern_horizon_bars=2)
    history = minutes(tenant, 0, 40)
    asyncio.run(send(stack_settings, tick_records(history)))
    wait_until(lambda: asyncio.run(pattern_count(stack_settings, tenant)) == 2 * (39 - 32), timeout_s=90,
               what="the patterns of the history")
    stop_server(stack_settings, "postgres")
    try:
        more = minutes(tenant, 40, 50)
        asyncio.run(send(stack_settings, tick_records(more)))
        # while the vector store is down: ticks, hot keys and candles keep arriving
        wait_until(lambda: stored(worker, [tenant]) == len(history) + len(more), timeout_s=60, what="every tick")
        assert_hot_keys_newest(stack_settings, history + more)
        wait_until(lambda: candles(worker, tenant) == 2 * 49, timeout_s=60, what="every bar, during the outage")
        report = wait_until(lambda: (h := health(worker))["stages"]["patterns"]["state"] == "paused" and h,
                            timeout_s=60, what="the patterns stage paused")
        stages = report["stages"]
        assert stages["patterns"]["paused_by"]["sink"] == "patterns"
        assert stages["ingest"]["state"] == "running" and stages["graph"]["state"] == "running"
        lag = wait_until(lambda: health(worker)["stages"]["patterns"]["lag"]["records"], timeout_s=30,
                         what="the paused stage's lag")
        assert lag > 0, "a paused stage shows its backlog"
    finally:
        start_server(stack_settings, "postgres")
    wait_until(lambda: logged(worker, "sink patterns recovered"), timeout_s=90, what="recovery")
    wait_until(lambda: asyncio.run(pattern_count(stack_settings, tenant)) == 2 * (49 - 32), timeout_s=90,
               what="the patterns of the bars closed during the outage")
    wait_until(lambda: health(worker)["stages"]["patterns"]["lag"]["records"] == 0, timeout_s=30, what="no lag left")


async def correlation_end(settings, tenant: str) -> int | None:
    from pipeline.stores.graph.falkordb import FalkorGraphStore

    graph = FalkorGraphStore(settings.graph_connection_url)
    await graph.start()
    try:
        edges = await graph.correlations(tenant, "EURUSD")
        return max((e.window_end_ms for e in edges), default=None)
    finally:
        await graph.close()


def test_a_graph_store_outage_pauses_only_the_graph_stage(stack_settings, worker_factory, tenant):
    worker = worker_factory(candle_timeframes="1m", correlation_window_bars=10, correlation_min_samples=5)
    history = minutes(tenant, 0, 20)
    asyncio.run(send(stack_settings, tick_records(history)))
    wait_until(lambda: asyncio.run(correlation_end(stack_settings, tenant)) == T0 + 19 * MINUTE, timeout_s=90,
               what="the edge of the history's last closed bar")
    stop_server(stack_settings, "graph")
    try:
        more = minutes(tenant, 20, 30)
        asyncio.run(send(stack_settings, tick_records(more)))
        wait_until(lambda: stored(worker, [tenant]) == len(history) + len(more), timeout_s=60, what="every tick")
        assert_hot_keys_newest(stack_settings, history + more)
        wait_until(lambda: candles(worker, tenant) == 2 * 29, timeout_s=60, what="every bar, during the outage")
        wait_until(lambda: health(worker)["stages"]["graph"]["state"] == "paused", timeout_s=60, what="the graph stage paused")
        assert health(worker)["stages"]["ingest"]["state"] == "running"
    finally:
        start_server(stack_settings, "graph")
    wait_until(lambda: asyncio.run(correlation_end(stack_settings, tenant)) == T0 + 29 * MINUTE, timeout_s=90,
               what="the edge of the bars closed during the outage")


async def _patterns_constraint(settings, sql: str) -> None:
    connection = await asyncpg.connect(settings.postgres_connection_dsn)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def test_patterns_a_vector_store_refuses_are_dead_lettered_and_the_stage_goes_on(stack_settings, worker_factory, tenant):
    """The vector store refuses what was derived from one series (a constraint): those bars' records go to the
    DLQ from the patterns stage, the other series' patterns are stored, and the stage is never paused."""
    name = f"no_poison_{tenant}"
    worker = worker_factory(candle_timeframes="1m", pattern_horizon_bars=2)  # creates the vector store's table
    asyncio.run(_patterns_constraint(
        stack_settings, f"ALTER TABLE patterns ADD CONSTRAINT {name} CHECK (NOT (tenant = '{tenant}' AND symbol = 'XAUUSD'))"))
    try:
        asyncio.run(send(stack_settings, tick_records(minutes(tenant, 0, 40))))
        wait_until(lambda: asyncio.run(pattern_count(stack_settings, tenant)) == 39 - 32, timeout_s=90,
                   what="EURUSD's patterns")
        letters = letters_of(stack_settings, f"{tenant}:demo:XAUUSD".encode(), 39 - 32)
        assert len(letters) == 39 - 32, "one dead letter per refused bar (windows ending at bars 32..38)"
        assert {(letter["stage"], letter["reason"], letter["topic"]) for letter in letters} == {
            ("patterns", "store_rejected", "candles.v1")}
        assert all("patterns:" in letter["error"] and name in letter["error"] for letter in letters)
        assert health(worker)["stages"]["patterns"]["state"] == "running"
    finally:
        asyncio.run(_patterns_constraint(stack_settings, f"ALTER TABLE patterns DROP CONSTRAINT IF EXISTS {name}"))
