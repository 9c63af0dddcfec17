"""Faults: kills, store outages, failing inserts, poison input. Nothing lost, nothing duplicated.

Each test is bounded in time (deadlines on every wait) and able to fail.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import jsonschema
import orjson
import pytest
import redis
from aiokafka import AIOKafkaConsumer, TopicPartition
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pipeline import devstack as stack
from pipeline.contracts.topics import TICKS_TOPIC
from pipeline.ingest.producer import MT5Producer, encode_tick
from pipeline.ops.sql_client import worker_query
from tests.stack.test_ticks_pipeline import make_ticks, newest_per_key, produce
from tests.topic_reader import read_topic
from tests.waiting import wait_until

pytestmark = pytest.mark.stack

MINUTE = 60_000
TICK_SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "tick.v1.json").read_text())


def visible_raw(worker, tenant: str) -> int:
    """Rows of ``tenant`` (0 while the table is detached: the query fails)."""
    try:
        return visible(worker, tenant)
    except Exception:  # noqa: BLE001 - the table is away
        return 0


def scalar(worker, sql: str) -> int:
    lines = worker_query(worker.settings, sql)
    assert lines is not None, "worker did not answer"
    return int(next(iter(orjson.loads(lines[0]).values())))


def visible(worker, tenant: str) -> int:
    return scalar(worker, f"SELECT count() FROM tickwire.ticks FINAL WHERE tenant = '{tenant}'")


def logged(worker, text: str) -> bool:
    return text in worker.log_file.read_text(errors="replace")


def health(worker) -> dict:
    """The worker's /health body (whatever its status code)."""
    try:
        with urllib.request.urlopen(worker.settings.api_url + "/health", timeout=10) as response:
            return orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return orjson.loads(exc.read())


def produce_in_background(settings, ticks: list[dict], chunk_pause_s: float) -> threading.Thread:
    thread = threading.Thread(target=lambda: asyncio.run(produce(settings, ticks, chunk_pause_s=chunk_pause_s)))
    thread.start()
    return thread


def candles_of(worker, tenant: str) -> list[dict]:
    lines = worker_query(worker.settings, (
        "SELECT symbol, timeframe, toUnixTimestamp64Milli(start) AS s, open, high, low, close, ticks, volume "
        f"FROM tickwire.candles FINAL WHERE tenant = '{tenant}' ORDER BY symbol, timeframe, s"))
    return [orjson.loads(line) for line in lines or []]


def assert_hot_keys_newest(settings, ticks: list[dict]) -> None:
    cache = redis.Redis.from_url(settings.cache_connection_url, decode_responses=True)
    for key, tick in newest_per_key(ticks).items():
        assert int(cache.hget(key, "time_msc")) == tick["time_msc"], key


def test_sigkill_several_times_during_100k_ticks(stack_settings, worker_factory, tenant, tmp_path):
    ticks = make_ticks([tenant], [f"S{i:02}" for i in range(20)], per_key=5_000)  # 100k; 10 ms apart per key
    worker = worker_factory(candle_timeframes="1m")
    producing = produce_in_background(stack_settings, ticks, chunk_pause_s=0.05)
    try:
        for _ in range(3):
            before = visible(worker, tenant)
            wait_until(lambda: visible(worker, tenant) > before, timeout_s=60, what="progress before the kill")
            worker.stop(signal.SIGKILL)
            worker = worker_factory(candle_timeframes="1m")
    finally:
        producing.join(timeout=120)
    wait_until(lambda: visible(worker, tenant) == len(ticks), timeout_s=120, what=f"{len(ticks)} ticks")
    assert scalar(worker, f"SELECT uniqExact(symbol, time) FROM tickwire.ticks FINAL WHERE tenant = '{tenant}'") == len(ticks)
    assert_hot_keys_newest(stack_settings, ticks)

    # candles equal those of a clean run over the same topic (fresh group and store, never killed)
    clean_dir = tmp_path / "clean"
    clean = worker_factory(candle_timeframes="1m", group_id=f"clean-{tenant}", app_id=f"clean-{tenant}-app",
                           clickhouse_dsn=f"chdb://{clean_dir / 'clickhouse'}", state_dir=clean_dir / "state")
    wait_until(lambda: visible(clean, tenant) == len(ticks), timeout_s=120, what="the clean run")
    expected_bars = len({(t["symbol"], t["time_msc"] // MINUTE) for t in ticks}) - 20  # the last bar of each key stays open
    wait_until(lambda: len(candles_of(clean, tenant)) == expected_bars, timeout_s=60, what="the clean run's bars")
    wait_until(lambda: candles_of(worker, tenant) == candles_of(clean, tenant), timeout_s=60,
               what="the killed run's bars to equal the clean run's")


def test_cache_outage_pauses_and_resumes_without_loss(stack_settings, worker_factory, tenant):
    ticks = make_ticks([tenant], [f"S{i}" for i in range(10)], per_key=3_000)
    before, during = ticks[: len(ticks) // 2], ticks[len(ticks) // 2:]
    worker = worker_factory()
    asyncio.run(produce(stack_settings, before))
    wait_until(lambda: visible(worker, tenant) == len(before), timeout_s=60, what="the first half")
    stack.stop_server(stack_settings, "cache")
    try:
        asyncio.run(produce(stack_settings, during))  # lands while the cache is down
        wait_until(lambda: logged(worker, "sink cache.hot_ticks unavailable"), timeout_s=30, what="the circuit to open")
        assert health(worker)["stages"]["ingest"]["circuits"]["cache.hot_ticks"]["state"] == "open"
        assert visible(worker, tenant) == len(before), "nothing may be committed while the cache is down"
    finally:
        stack.start_server(stack_settings, "cache")
    wait_until(lambda: logged(worker, "sink cache.hot_ticks recovered"), timeout_s=60, what="recovery")
    wait_until(lambda: visible(worker, tenant) == len(ticks), timeout_s=60, what="the lag to drain")
    assert health(worker)["stages"]["ingest"]["circuits"]["cache.hot_ticks"]["state"] == "closed"
    # the restarted cache starts empty: one more tick per key must land on top of the recovered state
    last = [dict(t, time_msc=t["time_msc"] + 1) for t in newest_per_key(ticks).values()]
    asyncio.run(produce(stack_settings, last))
    wait_until(lambda: visible(worker, tenant) == len(ticks) + len(last), timeout_s=30, what="the last ticks")
    assert_hot_keys_newest(stack_settings, ticks + last)


def test_postgres_outage_pauses_pattern_writes_and_resumes(stack_settings, worker_factory, tenant):
    worker = worker_factory(candle_timeframes="1m", pattern_horizon_bars=2)
    rng = random.Random(5)
    def minutes(first: int, last: int) -> list[dict]:
        out = []
        for symbol, base in (("EURUSD", 1.08), ("XAUUSD", 2650.0)):
            for m in range(first, last):
                for s in (5, 35, 55):
                    price = base * (1 + rng.gauss(0, 1e-3))
                    out.append(dict(tenant=tenant, broker="demo", symbol=symbol, time_msc=1_763_899_200_000 + m * MINUTE + s * 1000,
                                    bid=round(price, 5), ask=round(price * 1.0001, 5), flags=6))
        return out
    history = minutes(0, 40)
    asyncio.run(produce(stack_settings, history))
    wait_until(lambda: visible(worker, tenant) == len(history), timeout_s=60, what="the history")
    stack.stop_server(stack_settings, "postgres")
    try:
        more = minutes(40, 50)
        asyncio.run(produce(stack_settings, more))
        wait_until(lambda: logged(worker, "sink patterns unavailable"), timeout_s=60, what="the patterns circuit to open")
    finally:
        stack.start_server(stack_settings, "postgres")
    wait_until(lambda: logged(worker, "sink patterns recovered"), timeout_s=60, what="recovery")
    wait_until(lambda: visible(worker, tenant) == len(history) + len(more), timeout_s=60, what="every tick")
    # bars are computed in the checkpoint after the ticks that close them are stored: wait for them too
    wait_until(lambda: scalar(worker, f"SELECT count() FROM tickwire.candles FINAL WHERE tenant = '{tenant}'") == 2 * 49,
               timeout_s=60, what="every bar (50 minutes per symbol, the last one still open)")


def test_failed_clickhouse_insert_is_retried_never_skipped(stack_settings, worker_factory, tenant):
    ticks = make_ticks([tenant], [f"S{i}" for i in range(10)], per_key=2_000)
    before, during = ticks[: len(ticks) // 2], ticks[len(ticks) // 2:]
    worker = worker_factory()
    asyncio.run(produce(stack_settings, before))
    wait_until(lambda: visible(worker, tenant) == len(before), timeout_s=60, what="the first half")
    # the table is away (an operator detached it): every insert fails with UNKNOWN_TABLE, which is the store
    # being unavailable, not the data being refused: retried until the table is back, nothing dead-lettered
    worker_query(worker.settings, "DETACH TABLE tickwire.ticks", write=True)
    try:
        asyncio.run(produce(stack_settings, during))  # their insert fails while the table is detached
        # whichever ingest sink meets the missing table first (the ticks insert, or the bars' query of the
        # ticks) opens its circuit: the stage pauses, nothing is committed
        wait_until(lambda: logged(worker, "stage ingest: sink clickhouse.ticks unavailable")
                   or logged(worker, "stage ingest: sink candles unavailable"), timeout_s=30, what="a write to fail")
        assert visible_raw(worker, tenant) <= len(before)
    finally:
        worker_query(worker.settings, "ATTACH TABLE tickwire.ticks", write=True)
    wait_until(lambda: logged(worker, "recovered after"), timeout_s=60, what="recovery")
    wait_until(lambda: visible(worker, tenant) == len(ticks), timeout_s=60, what="every tick exactly once")
    assert scalar(worker, f"SELECT uniqExact(symbol, time) FROM tickwire.ticks FINAL WHERE tenant = '{tenant}'") == len(ticks)
    assert not logged(worker, "dead-lettered"), "an unavailable table is no reason to dead-letter anything"


def test_sigterm_flushes_and_commits_within_its_deadline(stack_settings, worker_factory, tenant):
    ticks = make_ticks([tenant], ["EURUSD", "GBPUSD"], per_key=2_000)
    worker = worker_factory()
    asyncio.run(produce(stack_settings, ticks))
    wait_until(lambda: visible(worker, tenant) == len(ticks), timeout_s=60, what="every tick")
    busy = make_ticks([tenant + "busy"], [f"B{i}" for i in range(20)], per_key=10_000)
    asyncio.run(produce(stack_settings, busy))  # a backlog: SIGTERM lands while batches are in flight
    wait_until(lambda: visible(worker, tenant + "busy") > 0, timeout_s=60, what="the backlog to start")
    started = time.monotonic()
    assert worker.stop(signal.SIGTERM, timeout_s=worker.settings.shutdown_timeout_s + 10) == 0
    assert time.monotonic() - started < worker.settings.shutdown_timeout_s
    assert logged(worker, "stage ingest stopped after a final checkpoint") and not logged(worker, "abandoning")
    committed_at_stop = asyncio.run(committed_offsets(stack_settings, worker.settings.group_id + ".ingest"))

    restarted = worker_factory()
    wait_until(lambda: visible(restarted, tenant + "busy") == len(busy), timeout_s=120, what="the rest after the restart")
    assert sum(committed_at_stop.values()) > 0, "the final checkpoint committed what was processed"


async def committed_offsets(settings, group: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = sorted(consumer.partitions_for_topic(TICKS_TOPIC))
        return {p: (await consumer.committed(TopicPartition(TICKS_TOPIC, p))) or 0 for p in partitions}
    finally:
        await consumer.stop()


def tick_like(tenant: str) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({
        "v": st.sampled_from([1, 1, 1, 2, "1"]),
        "tenant": st.sampled_from([tenant, tenant, "UPPER", "", "a:b"]),
        "broker": st.sampled_from(["demo", "demo", "ok", "b" * 70]),
        "symbol": st.one_of(st.sampled_from(["FUZZ", "FUZZ", "#AAPL", "US30+", "bad\nsym"]),
                            st.integers(33, 3000).map(lambda n: "x" * n)),
        "time_msc": st.one_of(st.integers(-5, 5_000_000_000_000), st.just(1_763_900_000_000),
                              st.floats(allow_nan=False, allow_infinity=False)),
        "bid": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.just(1.1), st.just(5e-324),
                         st.integers(-5, 10**12), st.text(max_size=3)),
        "ask": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.just(1.2), st.just(1.0), st.none()),
    }, optional={"flags": st.integers(-1, 300), "volume": st.integers(-1, 2**60), "extra": st.integers(-2**63, 2**63 - 1)})


def _key_of(tenant: str, document: dict) -> bytes:
    """The key a careful producer would use: the body's tenant:broker:symbol. Every key of an example starts
    with its tenant (the DLQ is read back by that prefix), so a body of another tenant gets a key that is not its own."""
    if document.get("tenant") != tenant:
        return f"{tenant}:not:its-own".encode()
    return ":".join(str(document.get(part, "")) for part in ("tenant", "broker", "symbol")).encode("utf-8", "replace")


# Hostile byte-level mutations of a valid record: each turns it into something a JSON parser must refuse,
# or into a record the domain checks refuse.
_HOSTILE = [
    lambda v: v.replace(b'"demo"', b'"de\xffmo"'),                 # invalid UTF-8 inside a string
    lambda v: v.replace(b'"broker"', b'"bro\xfeker"'),             # invalid UTF-8 inside a field name
    lambda v: v.replace(b'"demo"', b'"de\\ud800mo"'),              # a lone surrogate escape
    lambda v: v.replace(b'"demo"', b'"de\xed\xa0\x80mo"'),         # a surrogate encoded in UTF-8 (CESU)
    lambda v: v.replace(b'"demo"', b'"de\xc0\xafmo"'),             # an overlong encoding of '/'
    lambda v: v.replace(b'"flags":6', b'"bid":1.05'),               # a duplicate field name
    lambda v: v.replace(b'"flags":6', b'"bi\\u0064":1.05'),         # a duplicate, escaped
]


def encodings(tenant: str) -> st.SearchStrategy[tuple[bytes, bytes]]:
    """(key, value) pairs: valid ticks, hostile mutations of them, schema and domain violations, junk."""
    def valid_value(i: int) -> bytes:
        return encode_tick(tenant=tenant, broker="demo", symbol="FUZZ", time_msc=1_763_900_000_000 + i, bid=1.1, ask=1.2,
                           flags=6)

    key = f"{tenant}:demo:FUZZ".encode()
    valid = st.integers(0, 10**6).map(lambda i: (key, valid_value(i)))
    hostile = st.tuples(st.integers(0, 10**6), st.sampled_from(_HOSTILE)).map(lambda p: (key, p[1](valid_value(p[0]))))
    foreign_key = st.integers(0, 10**6).map(lambda i: (f"{tenant}x:demo:FUZZ".encode(), valid_value(i)))
    documents = tick_like(tenant).map(lambda d: (_key_of(tenant, d), orjson.dumps(d)))
    return st.one_of(
        valid,
        hostile,
        foreign_key,
        documents,
        documents.flatmap(lambda kd: st.integers(0, len(kd[1])).map(lambda n: (kd[0], kd[1][:n]))),  # truncated JSON
        st.binary(max_size=200).map(lambda b: (key, b)),
        st.just((key, b'{"v":1,"bid":1e999}')),
        st.integers(1000, 5000).map(lambda n: (key, b"[" * n)),
        st.integers(60_000, 100_000).map(lambda n: (key, b'{"v":1,"tenant":"' + b"x" * n + b'"}')),
    )


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


class _Twice(ValueError):
    pass


def _no_duplicates(pairs: list) -> dict:
    if len({name for name, _ in pairs}) != len(pairs):
        raise _Twice("a key appears twice")
    return dict(pairs)


def expected_valid(key: bytes, value: bytes, now_ms: int) -> bool:
    """Independent oracle: strict UTF-8 JSON, no key twice, valid against the published schema, and within the
    domain (prices in [1e-9, 1e9], bid <= ask, not more than 60 s in the future, keyed by its tenant:broker:symbol)."""
    if len(value) > 65_536:
        return False
    try:
        document = json.loads(value.decode("utf-8"), parse_constant=_no_constants, object_pairs_hook=_no_duplicates)
        json.dumps(document, ensure_ascii=False).encode("utf-8")  # lone surrogates cannot be encoded
    except (ValueError, UnicodeError, RecursionError):
        return False
    if not jsonschema.Draft202012Validator(TICK_SCHEMA).is_valid(document):
        return False
    prices_ok = all(1e-9 <= document[f] <= 1e9 for f in ("bid", "ask")) and (
        document.get("last", 0) == 0 or 1e-9 <= document["last"] <= 1e9)
    return (prices_ok and document["bid"] <= document["ask"] and document["time_msc"] <= now_ms + 60_000
            and key == f"{document['tenant']}:{document['broker']}:{document['symbol']}".encode())


def identity(value: bytes) -> tuple:
    """What deduplicates a stored tick (see pipeline.stores.analytics_tables)."""
    d = json.loads(value)
    return (d["broker"], d["symbol"], int(d["time_msc"]), d["bid"], d["ask"], d.get("last", 0), d.get("volume", 0),
            d.get("volume_real", 0), d.get("flags", 0))


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck),
          phases=(Phase.explicit, Phase.reuse, Phase.generate))  # no shrinking: each example waits on the worker
@given(data=st.data())
def test_any_bytes_become_rows_or_dead_letters_and_the_worker_stays_up(stack_settings, module_worker, data):
    tenant = "fz" + uuid.uuid4().hex[:12]  # not random.*: hypothesis seeds it identically per example
    records = data.draw(st.lists(encodings(tenant), min_size=5, max_size=40))
    records += [(f"{tenant}:demo:FUZZ".encode(), mutate(encode_tick(tenant=tenant, broker="demo", symbol="FUZZ",
                                                                      time_msc=1_763_900_000_000, bid=1.1, ask=1.2, flags=6)))
                for mutate in _HOSTILE]  # every hostile class at least once

    async def send() -> None:
        async with MT5Producer(stack_settings, validate=False) as producer:
            for key, value in records:
                await producer.send_raw(TICKS_TOPIC, key, value)

    now_ms = int(time.time() * 1000)
    asyncio.run(send())
    stored = {identity(v) for k, v in records if expected_valid(k, v, now_ms) and json.loads(v)["tenant"] == tenant}
    bad = [v for k, v in records if not expected_valid(k, v, now_ms)]
    wait_until(lambda: visible(module_worker, tenant) == len(stored), timeout_s=30, what=f"{len(stored)} valid ticks")
    # a dead letter is keyed by its record's key, or by sha256:<hex> of a key over 1 KiB
    long_keys = tuple(b"sha256:" + hashlib.sha256(k).hexdigest().encode() for k, v in records
                      if len(k) > 1024 and not expected_valid(k, v, now_ms))
    letters = asyncio.run(read_topic(stack_settings, "dlq.v1", (tenant.encode(), *long_keys), len(bad), timeout_s=60))
    assert len(letters) == len(bad)
    assert sorted(base64.b64decode(orjson.loads(v)["value_b64"]) for _, v in letters) == sorted(bad)
    assert module_worker.running()
