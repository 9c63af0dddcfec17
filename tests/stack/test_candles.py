"""Candles on the real stack, against a reference computed independently with pandas."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import jsonschema
import orjson
import pandas as pd
import pytest

from pipeline.ingest.producer import encode_tick
from pipeline.ops.sql_client import worker_query
from tests.stack.test_ticks_pipeline import produce
from tests.topic_reader import read_topic
from tests.waiting import wait_until

pytestmark = pytest.mark.stack

T0 = 1_763_899_200_000  # 2025-11-23 12:00:00 UTC, aligned to 5 minutes
MINUTE = 60_000
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "candle.v2.json").read_text())  # candles.v1 carries


def tick_sequence(tenant: str) -> list[dict]:
    """Two symbols, random ticks over 10 minutes, then one tick at 10:00.5 that closes every bar before it."""
    rng = random.Random(42)
    ticks = []
    for symbol, mid in (("EURUSD", 1.08), ("XAUUSD", 2650.0)):
        times = sorted(rng.sample(range(T0, T0 + 10 * MINUTE), 400))
        for t in times:
            mid *= 1 + rng.gauss(0, 1e-4)
            half = mid * rng.uniform(2e-5, 8e-5)
            ticks.append(dict(tenant=tenant, broker="demo", symbol=symbol, time_msc=t, bid=round(mid - half, 5),
                              ask=round(mid + half, 5), volume=rng.randint(0, 5), flags=6))
        ticks.append(dict(tenant=tenant, broker="demo", symbol=symbol, time_msc=T0 + 10 * MINUTE + 500,
                          bid=round(mid, 5), ask=round(mid + 0.0001, 5), flags=6))
    return ticks


def reference_bars(ticks: list[dict], rule: str, closed_before_ms: int) -> pd.DataFrame:
    df = pd.DataFrame(ticks)
    df["time"] = pd.to_datetime(df["time_msc"], unit="ms", utc=True)
    df["mid"] = (df["bid"] + df["ask"]) / 2
    df["spread"] = df["ask"] - df["bid"]
    bars = (
        df.sort_values("time_msc").groupby("symbol").resample(rule, on="time")
        .agg(open=("mid", "first"), high=("mid", "max"), low=("mid", "min"), close=("mid", "last"),
             bid_close=("bid", "last"), ask_close=("ask", "last"), spread_avg=("spread", "mean"),
             spread_min=("spread", "min"), spread_max=("spread", "max"), ticks=("mid", "count"), volume=("volume", "sum"))
        .reset_index()
    )
    bars = bars[bars["ticks"] > 0]
    bars["start_ms"] = bars["time"].map(lambda t: round(t.timestamp() * 1000))
    return bars[bars["start_ms"] < closed_before_ms].set_index(["symbol", "start_ms"]).sort_index()


def stored_bars(worker, tenant: str, timeframe: str) -> pd.DataFrame:
    lines = worker_query(worker.settings, (
        "SELECT symbol, toUnixTimestamp64Milli(start) AS start_ms, open, high, low, close, bid_close, ask_close, "
        "spread_avg, spread_min, spread_max, ticks, volume FROM tickwire.candles FINAL "
        f"WHERE tenant = '{tenant}' AND timeframe = '{timeframe}' ORDER BY symbol, start_ms"))
    rows = [orjson.loads(line) for line in lines or []]
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).set_index(["symbol", "start_ms"]).sort_index()


def raw_candle_rows(worker, tenant: str) -> int:
    lines = worker_query(worker.settings, f"SELECT count() AS n FROM tickwire.candles FINAL WHERE tenant = '{tenant}'")
    return orjson.loads(lines[0])["n"]


def assert_bars_equal(stored: pd.DataFrame, reference: pd.DataFrame) -> None:
    assert list(stored.index) == list(reference.index)
    for column in ("open", "high", "low", "close", "bid_close", "ask_close", "spread_min", "spread_max"):
        assert (stored[column] - reference[column]).abs().max() < 1e-9, column
    assert (stored["spread_avg"] - reference["spread_avg"]).abs().max() < 1e-9
    assert list(stored["ticks"]) == list(reference["ticks"])
    assert list(stored["volume"]) == list(reference["volume"])


def test_candles_match_pandas_amend_late_tick_and_replay_adds_nothing(stack_settings, worker_factory, tenant):
    ticks = tick_sequence(tenant)
    worker = worker_factory(candle_timeframes="1m,5m", candle_lateness_ms=5_000)
    asyncio.run(produce(stack_settings, ticks))
    closed_before = T0 + 10 * MINUTE
    expected_1m = reference_bars(ticks, "1min", closed_before)
    expected_5m = reference_bars(ticks, "5min", closed_before)
    assert len(expected_1m) == 20 and len(expected_5m) == 4

    wait_until(lambda: len(stored_bars(worker, tenant, "1m")) == 20 and len(stored_bars(worker, tenant, "5m")) == 4,
               timeout_s=60, what="20 one-minute and 4 five-minute bars")
    assert_bars_equal(stored_bars(worker, tenant, "1m"), expected_1m)
    assert_bars_equal(stored_bars(worker, tenant, "5m"), expected_5m)

    # a late tick 0.6 s behind the watermark: within lateness, so it amends the 09:59 bar (one row, more ticks)
    late = dict(tenant=tenant, broker="demo", symbol="EURUSD", time_msc=closed_before - 100, bid=1.2, ask=1.2002, flags=6)
    asyncio.run(produce(stack_settings, [late]))
    amended = expected_1m.copy()
    reference_after = reference_bars(ticks + [late], "1min", closed_before)
    wait_until(lambda: stored_bars(worker, tenant, "1m").loc[("EURUSD", closed_before - MINUTE), "ticks"]
               == reference_after.loc[("EURUSD", closed_before - MINUTE), "ticks"], timeout_s=30, what="the amended bar")
    assert_bars_equal(stored_bars(worker, tenant, "1m"), reference_after)
    assert (reference_after["ticks"] - amended["ticks"]).sum() == 1

    # replaying every tick again changes nothing and adds no bar
    rows_before = raw_candle_rows(worker, tenant)
    asyncio.run(produce(stack_settings, ticks + [late]))
    # markers on the partitions of both series: stored only after the replayed ticks before them (a tick of
    # the same series 1 ms before the first one: far behind the watermark, so it is stored but changes no bar)
    markers = [(f"{tenant}:demo:{symbol}".encode(),
                encode_tick(tenant=tenant, broker="demo", symbol=symbol, time_msc=T0 - 1, bid=1.0, ask=1.1))
               for symbol in ("EURUSD", "XAUUSD")]
    asyncio.run(produce(stack_settings, [], raw=markers))
    wait_until(lambda: orjson.loads(worker_query(worker.settings,
               f"SELECT count() AS n FROM tickwire.ticks FINAL WHERE tenant = '{tenant}'")[0])["n"] == len(ticks) + 3,
               timeout_s=30, what="the replay to be consumed")
    assert raw_candle_rows(worker, tenant) == rows_before
    assert_bars_equal(stored_bars(worker, tenant, "1m"), reference_after)

    # every published bar decodes with the published schema (candle.v2: with indicators)
    messages = [orjson.loads(v) for _, v in asyncio.run(read_topic(stack_settings, "candles.v1", f"{tenant}:".encode(), 24))]
    assert len(messages) >= 24
    for message in messages:
        jsonschema.validate(message, SCHEMA)
        assert message["v"] == 2
