"""The analytics role's conformance suite: :class:`~pipeline.stores.analytics.AnalyticsStore` on every reachable ClickHouse.

Backends: chDB (in this process: the only chDB engine the test process opens,
one engine per process) always; a ClickHouse server over HTTP when
``TICKWIRE_TEST_CLICKHOUSE_URL`` is ``http(s)://user:password@host:8123``
(skipped with that reason otherwise). Each run migrates a database of its own
(dropped at the end on a server), so the DDL of ``pipeline/stores/analytics_tables.py``
is executed on each backend exactly as the worker executes it.

What it pins down: the migrations are idempotent, every table keeps one
visible row per identity under ``FINAL`` (the version column decides for
candles), queries are read-only unless asked otherwise and take server-side
parameters, and on a server every insert carries the async-insert settings
that keep "flushed" meaning durable and visible.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from pipeline.config import load_settings
from pipeline.stores.analytics import AnalyticsStore
from pipeline.stores.analytics_tables import CANDLES_COLUMNS, SIGNALS_COLUMNS, TICKS_COLUMNS

SERVER_URL = os.environ.get("TICKWIRE_TEST_CLICKHOUSE_URL")
DATABASE = "tw_conformance_" + uuid.uuid4().hex[:8]
T0 = 1_763_900_000_000


@pytest_asyncio.fixture(scope="module", params=["chdb", "clickhouse-server"])
async def analytics(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AnalyticsStore]:
    if request.param == "chdb":
        dsn = f"chdb://{Path(tmp_path_factory.mktemp('chdb')) / 'clickhouse'}"
    elif SERVER_URL is None:
        pytest.skip("TICKWIRE_TEST_CLICKHOUSE_URL is not set: the ClickHouse server run needs a live server")
    else:
        dsn = SERVER_URL
    store = AnalyticsStore(load_settings(clickhouse_dsn=dsn, clickhouse_database=DATABASE))
    await store.migrate()
    yield store
    if not store.in_process:
        await store.session("conformance").command(f"DROP DATABASE IF EXISTS {DATABASE}")
    await store.close()


def tick_columns(tenant: str, n: int, *, offset: int = 0) -> list[list]:
    """``n`` distinct ticks of one symbol (10 ms apart), column-wise, in TICKS_COLUMNS order."""
    times = [T0 + i * 10 for i in range(n)]
    return [[tenant] * n, ["demo"] * n, ["EURUSD"] * n, times, [1.1] * n, [1.1002] * n, [0.0] * n,
            [1] * n, [0.5] * n, [6] * n, [0.0002] * n, [0] * n, [offset + i for i in range(n)]]


async def scalar(store: AnalyticsStore, sql: str, **parameters: object) -> object:
    _, rows = await store.read(sql, parameters, timeout_s=30)
    return rows[0][0]


async def test_migrations_are_idempotent_and_create_every_table(analytics: AnalyticsStore) -> None:
    await analytics.migrate()
    _, rows = await analytics.read("SELECT name, engine FROM system.tables WHERE database = {db:String} ORDER BY name",
                                   {"db": DATABASE}, timeout_s=30)
    assert rows == [("candles", "ReplacingMergeTree"), ("signal_outcomes", "ReplacingMergeTree"),
                    ("signals", "ReplacingMergeTree"), ("ticks", "ReplacingMergeTree")]


async def test_a_tick_written_twice_is_one_row(analytics: AnalyticsStore, tenant: str) -> None:
    await analytics.session("conformance").insert_columns("ticks", TICKS_COLUMNS, tick_columns(tenant, 500))
    await analytics.session("conformance").insert_columns("ticks", TICKS_COLUMNS, tick_columns(tenant, 500, offset=1_000))  # redelivered
    sql = f"SELECT count() FROM {DATABASE}.ticks FINAL WHERE tenant = {{tenant:String}}"
    assert await scalar(analytics, sql, tenant=tenant) == 500


async def test_the_candle_with_more_ticks_wins(analytics: AnalyticsStore, tenant: str) -> None:
    def bar(ticks: int, close: float) -> list[list]:
        values = [tenant, "demo", "EURUSD", "1m", T0, T0 + 60_000, 1.0, 1.2, 0.9, close, close, close + 0.0002,
                  0.0002, 0.0001, 0.0003, ticks, ticks, float(ticks), {}, [0.0, 0.0]]
        return [[v] for v in values]

    for ticks, close in [(3, 1.01), (5, 1.05), (4, 1.04)]:  # an amended bar, then a stale replay of an older one
        await analytics.session("conformance").insert_columns("candles", CANDLES_COLUMNS, bar(ticks, close))
    _, rows = await analytics.read(
        f"SELECT ticks, close FROM {DATABASE}.candles FINAL WHERE tenant = {{tenant:String}}", {"tenant": tenant}, timeout_s=30)
    assert rows == [(5, 1.05)]


async def test_a_signal_is_one_row_per_tenant_and_id(analytics: AnalyticsStore, tenant: str) -> None:
    def signals(ids: list[str], reason: str | None) -> list[list]:
        n = len(ids)
        return [[tenant] * n, ids, ["demo"] * n, ["trend"] * n, ["EURUSD"] * n, [T0] * n, ["buy"] * n, [0.5] * n,
                [1.1] * n, [None] * n, [None] * n, [reason] * n, [0] * n, list(range(n))]

    await analytics.session("conformance").insert_columns("signals", SIGNALS_COLUMNS, signals(["s1", "s2"], None))
    await analytics.session("conformance").insert_columns("signals", SIGNALS_COLUMNS, signals(["s2", "s3"], "again"))
    sql = f"SELECT id FROM {DATABASE}.signals FINAL WHERE tenant = {{tenant:String}} ORDER BY id"
    _, rows = await analytics.read(sql, {"tenant": tenant}, timeout_s=30)
    assert rows == [("s1",), ("s2",), ("s3",)]


async def test_reads_are_read_only_and_bounded_and_leave_the_writer_writable(analytics: AnalyticsStore, tenant: str) -> None:
    with pytest.raises(Exception, match="(?i)readonly"):
        await analytics.read(f"INSERT INTO {DATABASE}.signals (tenant, id) VALUES ({{t:String}}, 'x')", {"t": tenant},
                             timeout_s=30)
    assert await scalar(analytics, f"SELECT count() FROM {DATABASE}.signals WHERE tenant = {{t:String}}", t=tenant) == 0
    # a hostile parameter value is a value, never SQL
    assert await scalar(analytics, "SELECT {v:String}", v="x' OR 1=1 --") == "x' OR 1=1 --"
    # a read past its time is cancelled in the store, not merely abandoned
    with pytest.raises(Exception, match="TIMEOUT_EXCEEDED"):
        await analytics.read("SELECT sleepEachRow(0.5) FROM numbers(10) SETTINGS max_block_size = 1", timeout_s=1)
    # the refused write left the writer sessions writable
    await analytics.session("conformance").insert_columns("signals", SIGNALS_COLUMNS, [
        [tenant], ["w"], ["demo"], ["s"], ["EURUSD"], [T0], ["buy"], [0.5], [None], [None], [None], [None], [0], [0]])
    assert await scalar(analytics, f"SELECT count() FROM {DATABASE}.signals WHERE tenant = {{t:String}}", t=tenant) == 1


async def test_inserts_on_a_server_wait_for_async_inserts(analytics: AnalyticsStore) -> None:
    if analytics.in_process:
        assert analytics.session("conformance").insert_settings == {}
    else:
        assert analytics.session("conformance").insert_settings == {"async_insert": 1, "wait_for_async_insert": 1}


async def test_retention_drops_rows_older_than_it(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The TTL of TICKWIRE_TICKS_RETENTION_DAYS, live on chDB: a merge drops ticks older than it, keeps newer ones."""
    dsn = f"chdb://{Path(tmp_path_factory.mktemp('ttl')) / 'clickhouse'}"
    store = AnalyticsStore(load_settings(clickhouse_dsn=dsn, clickhouse_database="tw_ttl", ticks_retention_days=30))
    try:
        await store.migrate()
        await store.migrate()  # idempotent, MODIFY TTL included
        now_ms = int(__import__("time").time() * 1000)
        old, new = tick_columns("ttl", 1), tick_columns("ttl", 1, offset=1)
        old[3], new[3] = [now_ms - 40 * 86_400_000], [now_ms - 86_400_000]
        session = store.session("conformance")
        await session.insert_columns("ticks", TICKS_COLUMNS, old)
        await session.insert_columns("ticks", TICKS_COLUMNS, new)
        await session.command("OPTIMIZE TABLE tw_ttl.ticks FINAL")
        _, rows = await store.read("SELECT toUnixTimestamp64Milli(time) FROM tw_ttl.ticks", timeout_s=30)
        assert rows == [(new[3][0],)]
        _, shown = await store.read("SHOW CREATE TABLE tw_ttl.ticks", timeout_s=30)
        assert "TTL toDateTime(time) + toIntervalDay(30)" in shown[0][0]
    finally:
        await store.close()
