"""Indicators of every bar and daily bars on the broker's trading day, end to end on the real stack.

One tenant's ticks over a weekend of event time for a broker on UTC+2: Friday 20:30–21:59 UTC (the end of its
Friday: 23:59 on its server), nothing on Saturday and Sunday, then Sunday 22:00–22:29 UTC (its Monday's first
half hour). Checked: the stored 1m bars carry every indicator once warmed up, equal to TA-Lib's (and a direct
VWAP) on the stored bars; the one daily bar is the broker's Friday ([Thu 22:00, Fri 22:00) UTC) and there are no
weekend bars; what ``candles.v1`` carries validates against candle.v2 and equals what is stored;
``/v1/indicators`` and ``/v1/candles`` answer them to the caller's tenant only; a candles table made before
indicators gets the column. Then a worker SIGKILLed mid-stream and restarted, and a replay into an empty chDB
directory, store exactly the same values (bit for bit) as the clean run.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from pipeline.config import Settings, load_settings
from pipeline.contracts.indicators import IndicatorSpec
from pipeline.contracts.timeframes import TradingDays, parse_day_offsets
from pipeline.derive.indicators import BarPoint
from pipeline.devstack.worker_process import settings_env
from pipeline.ops.sql_client import worker_query
from tests.api_support import ApiClient, issue_key
from tests.stack.test_ticks_pipeline import produce
from tests.talib_reference import assert_agrees, reference_vwap, talib_values
from tests.topic_reader import read_topic
from tests.waiting import wait_until

pytestmark = pytest.mark.stack

MINUTE = 60_000
HOUR = 60 * MINUTE
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
SETTINGS: dict[str, Any] = dict(candle_timeframes="1m,1d", broker_day_offsets="demo=+2", indicator_window_bars=60)
SPEC = IndicatorSpec(window_bars=60)
#: the restart test's: a shorter window (and periods) so that bars fed one by one go past it quickly
SHORT: dict[str, Any] = {**SETTINGS, "indicator_window_bars": 40, "indicator_sma_periods": "10",
                         "indicator_ema_periods": "10"}
SHORT_SPEC = IndicatorSpec((10,), (10,), 40)
OLD_BARS = 70
DAYS = TradingDays(parse_day_offsets("demo=+2"))
SYMBOLS = ("EURUSD", "XAUUSD")  # EURUSD without real volume (tick-weighted VWAP), XAUUSD with


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() * 1000)


FRIDAY, SUNDAY = utc("2025-11-21 20:30"), utc("2025-11-23 22:00")
FRIDAY_BARS, SUNDAY_BARS = 90, 30
#: every closed 1m bar's start (the Sunday 22:30 tick closes 22:29)
MINUTE_STARTS = [FRIDAY + i * MINUTE for i in range(FRIDAY_BARS)] + [SUNDAY + i * MINUTE for i in range(SUNDAY_BARS)]


def ticks_of(tenant: str, seed: int = 21) -> tuple[list[dict], list[dict]]:
    """(Friday's ticks, Sunday's ticks and the one that closes the last bar): three ticks a minute per symbol."""
    rng = random.Random(seed)
    friday, sunday = [], []
    for s, symbol in enumerate(SYMBOLS):
        mid = (1.1, 2650.0)[s]
        for start in MINUTE_STARTS + [SUNDAY + SUNDAY_BARS * MINUTE]:
            for offset in ((5_000, 25_000, 50_000) if start < SUNDAY + SUNDAY_BARS * MINUTE else (500,)):
                mid *= 1 + rng.gauss(0, 4e-4)
                half = mid * 2e-5
                volume = rng.randint(1, 5) if symbol == "XAUUSD" else 0
                tick = dict(tenant=tenant, broker="demo", symbol=symbol, time_msc=start + offset, bid=round(mid - half, 6),
                            ask=round(mid + half, 6), volume=volume, volume_real=float(volume), flags=6)
                (friday if start < SUNDAY else sunday).append(tick)
    return friday, sunday


def query(settings: Settings, sql: str) -> list[dict]:
    """Rows from the worker holding ``settings``' chDB directory, or from the directory itself when none does."""
    lines = worker_query(settings, sql)
    if lines is None:
        done = subprocess.run([sys.executable, "-m", "pipeline", "sql", sql], capture_output=True, text=True, timeout=180,
                              env={**os.environ, **settings_env(settings)})
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
    return [orjson.loads(line) for line in lines]


def stored(settings: Settings, tenant: str) -> list[dict]:
    return query(settings, (
        "SELECT symbol, timeframe, toUnixTimestamp64Milli(start) AS start_ms, toUnixTimestamp64Milli(end) AS end_ms, "
        "open, high, low, close, ticks, volume_real, indicators FROM tickwire.candles FINAL "
        f"WHERE tenant = '{tenant}' ORDER BY symbol, timeframe, start_ms"))


def fingerprint(settings: Settings, tenant: str) -> list[dict]:
    """Every bar of ``tenant`` with its indicators as the bits of each Float64 (equal only if bit for bit)."""
    return query(settings, (
        "SELECT symbol, timeframe, toUnixTimestamp64Milli(start) AS s, reinterpretAsUInt64(close) AS close_bits, ticks, "
        "mapApply((name, value) -> (name, reinterpretAsUInt64(value)), indicators) AS bits FROM tickwire.candles FINAL "
        f"WHERE tenant = '{tenant}' ORDER BY symbol, timeframe, s"))


def minute_bars(settings: Settings, tenant: str) -> int:
    return query(settings, "SELECT count() AS n FROM tickwire.candles FINAL "
                           f"WHERE tenant = '{tenant}' AND timeframe = '1m'")[0]["n"]


def expected_bar_count() -> int:
    return len(SYMBOLS) * (len(MINUTE_STARTS) + 1)  # and one daily bar each


def worker_settings(stack_settings: Settings, directory: Path, group: str) -> Settings:
    return load_settings(**{**stack_settings.model_dump(), **SETTINGS, "group_id": group, "app_id": group + "-app",
                            "clickhouse_dsn": f"chdb://{directory / 'clickhouse'}", "state_dir": directory / "state"})


OLD_CANDLES_DDL = """
CREATE TABLE tickwire.candles (
    tenant LowCardinality(String), broker LowCardinality(String), symbol LowCardinality(String),
    timeframe LowCardinality(String), start DateTime64(3, 'UTC'), end DateTime64(3, 'UTC'),
    open Float64, high Float64, low Float64, close Float64, bid_close Float64, ask_close Float64,
    spread_avg Float64, spread_min Float64, spread_max Float64, ticks UInt32, volume UInt64, volume_real Float64
) ENGINE = ReplacingMergeTree(ticks) PARTITION BY toYYYYMM(start) ORDER BY (tenant, broker, symbol, timeframe, start)
"""


def write_directly(settings: Settings, sql: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pipeline", "sql", "--write", sql], capture_output=True, text=True,
                          timeout=180, env={**os.environ, **settings_env(settings)})
    assert done.returncode == 0, done.stderr


def test_bars_carry_talibs_indicators_on_the_brokers_days_on_the_topic_and_in_the_api(
        stack_settings: Settings, worker_factory, tenant: str, tmp_path: Path) -> None:
    other = tenant + "x"
    # a candles table made before indicators existed, holding XAUUSD's 1m bars of the 70 minutes before the ticks
    # (the same trading day, more than the window): the worker adds the columns, and the first new bar's VWAP has
    # no stored sums before it, so its day is read whole
    before = worker_settings(stack_settings, tmp_path, "unused")
    write_directly(before, "CREATE DATABASE IF NOT EXISTS tickwire")
    write_directly(before, OLD_CANDLES_DDL)
    write_directly(before, (
        f"INSERT INTO tickwire.candles SELECT '{tenant}', 'demo', 'XAUUSD', '1m', "
        f"fromUnixTimestamp64Milli(toInt64({FRIDAY - OLD_BARS * MINUTE} + number * {MINUTE})), "
        f"fromUnixTimestamp64Milli(toInt64({FRIDAY - (OLD_BARS - 1) * MINUTE} + number * {MINUTE})), "
        "2640 + number * 0.1 + (number % 3) * 0.7 AS o, o + 0.5, o - 0.5, o + 0.05, o + 0.04, o + 0.06, 0.02, 0.01, 0.03, "
        f"3, 2, 2.0 FROM numbers({OLD_BARS})"))

    worker = worker_factory(**SETTINGS)
    friday, sunday = ticks_of(tenant)
    asyncio.run(produce(stack_settings, friday + sunday + [t for half in ticks_of(other, seed=99) for t in half]))
    wait_until(lambda: len(stored(worker.settings, tenant)) == expected_bar_count() + OLD_BARS, timeout_s=120,
               what="every 1m bar and the daily bars")
    wait_until(lambda: len(stored(worker.settings, other)) == expected_bar_count(), timeout_s=120,
               what="the other tenant's bars too (produced after these: compared with what its key reads below)")
    everything = stored(worker.settings, tenant)
    old = [r for r in everything if r["start_ms"] < FRIDAY and r["timeframe"] == "1m"]
    rows = [r for r in everything if r not in old]
    assert len(old) == OLD_BARS and all(r["indicators"] == {} for r in old), "bars from before: no indicators"

    # the daily bar is the broker's Friday, [Thu 22:00, Fri 22:00) UTC; no bar over the weekend
    daily = [r for r in rows if r["timeframe"] == "1d"]
    assert [(r["symbol"], r["start_ms"], r["end_ms"]) for r in daily] == [
        (s, utc("2025-11-20 22:00"), utc("2025-11-21 22:00")) for s in SYMBOLS]
    for bar, symbol in zip(daily, SYMBOLS):
        fridays = [t for t in friday if t["symbol"] == symbol]
        assert bar["ticks"] == len(fridays) and bar["close"] == pytest.approx((fridays[-1]["bid"] + fridays[-1]["ask"]) / 2)
        assert set(bar["indicators"]) == {"vwap"}, "one daily bar: everything else is warming up"
    minutes = {s: [r for r in rows if r["timeframe"] == "1m" and r["symbol"] == s] for s in SYMBOLS}
    assert all([r["start_ms"] for r in minutes[s]] == MINUTE_STARTS for s in SYMBOLS), "no bar Fri 22:00–Sun 22:00"

    # every 1m bar's indicators are TA-Lib's on the stored bars (its window: it and the 60 before, the bars from
    # before included), VWAP by day (XAUUSD's Friday from the first bar from before)
    for symbol, bars in minutes.items():
        series = [r for r in old if r["symbol"] == symbol] + bars
        points = [BarPoint(r["start_ms"], r["high"], r["low"], r["close"], r["ticks"], r["volume_real"]) for r in series]
        vwaps = reference_vwap(points, lambda t: DAYS.day_start("demo", t))
        for i in range(len(series) - len(bars), len(series)):
            window = points[max(0, i - SPEC.window_bars):i + 1]
            values = dict(series[i]["indicators"])
            assert values.pop("vwap") == pytest.approx(vwaps[i], rel=1e-12), (symbol, i)
            assert_agrees(values, talib_values(window, SPEC), window, f"{symbol} bar {i}")
        assert all(set(r["indicators"]) == set(SPEC.names) for r in bars[50:]), "warmed up: every indicator"
        assert bars[FRIDAY_BARS]["indicators"]["vwap"] == pytest.approx(
            (bars[FRIDAY_BARS]["high"] + bars[FRIDAY_BARS]["low"] + bars[FRIDAY_BARS]["close"]) / 3), "a new day"

    # what candles.v1 carries: candle.v2 messages, the stored values
    schema = json.loads((SCHEMAS / "candle.v2.json").read_text())
    messages = [orjson.loads(v) for _, v in
                asyncio.run(read_topic(stack_settings, "candles.v1", f"{tenant}:".encode(), expected_bar_count()))]
    assert len(messages) >= expected_bar_count()
    latest = {}
    for message in messages:
        jsonschema.validate(message, schema)
        assert message["v"] == 2
        latest[message["symbol"], message["timeframe"], message["start_ms"]] = message["indicators"]
    assert latest == {(r["symbol"], r["timeframe"], r["start_ms"]): r["indicators"] for r in rows}

    # the API: the caller's tenant only
    client = ApiClient(worker.settings.api_url)
    mine, theirs = (client.with_key(issue_key(stack_settings, t).key) for t in (tenant, other))
    answer = mine.pages("/v1/indicators", symbol="XAUUSD", timeframe="1m", limit=50)
    expected = list(reversed(minutes["XAUUSD"]))
    assert [(a["start_ms"], a["end_ms"], a["broker"], a["indicators"]) for a in answer] == [
        (r["start_ms"], r["end_ms"], "demo", r["indicators"]) for r in expected + old[::-1]]
    subset = mine.data("/v1/indicators", symbol="XAUUSD", timeframe="1m", names="rsi_14,vwap", limit=3)
    assert [a["indicators"] for a in subset] == [{k: r["indicators"][k] for k in ("rsi_14", "vwap")} for r in expected[:3]]
    assert mine.get("/v1/indicators", symbol="XAUUSD", timeframe="1m", names="rsi_14,nope").body["parameter"] == "names"
    candles = mine.data("/v1/candles", symbol="EURUSD", timeframe="1d")
    assert [c["indicators"] for c in candles] == [daily[0]["indicators"]]
    from_before = mine.data("/v1/candles", symbol="XAUUSD", timeframe="1m", to=FRIDAY, limit=100)
    assert [c["indicators"] for c in from_before] == [{}] * OLD_BARS, "bars from before: none"
    their_rows = stored(worker.settings, other)
    mine_values = {value for r in rows for value in r["indicators"].values()}
    for symbol in SYMBOLS:
        for timeframe in ("1m", "1d"):
            for broker in (None, "demo"):
                seen = theirs.pages("/v1/indicators", symbol=symbol, timeframe=timeframe, broker=broker, limit=1000)
                own = [r for r in reversed(their_rows) if (r["symbol"], r["timeframe"]) == (symbol, timeframe)]
                assert [(a["start_ms"], a["indicators"]) for a in seen] == [(r["start_ms"], r["indicators"]) for r in own]
                assert not mine_values & {value for a in seen for value in a["indicators"].values()}
    assert theirs.data("/v1/indicators", symbol="XAUUSD", timeframe="1m", to=FRIDAY) == [], \
        "another tenant's key sees nothing of this tenant's bars from before"


def test_a_sigkilled_worker_and_a_replay_store_exactly_the_clean_runs_indicators(
        stack_settings: Settings, worker_factory, tenant: str, tmp_path: Path) -> None:
    friday, sunday = ticks_of(tenant)
    crashed = worker_factory(**SHORT)
    # live, bar by bar past the window: each minute's ticks close the minute before, whose indicators read the
    # stored bars before it (a backlog computes many bars in one flush: the same values)
    for m, start in enumerate(MINUTE_STARTS[:SHORT_SPEC.window_bars + 10]):
        asyncio.run(produce(stack_settings, [t for t in friday if start <= t["time_msc"] < start + MINUTE]))
        wait_until(lambda: minute_bars(crashed.settings, tenant) == 2 * m, timeout_s=30, what=f"bar {m} closed")
    rest = [t for t in friday if t["time_msc"] >= MINUTE_STARTS[SHORT_SPEC.window_bars + 10]] + sunday
    producing = threading.Thread(target=lambda: asyncio.run(produce(stack_settings, rest)))
    producing.start()
    crashed.stop(signal.SIGKILL)  # mid-stream: the rest arrives meanwhile
    producing.join(timeout=120)
    restarted = worker_factory(**SHORT)  # same group and chDB directory
    wait_until(lambda: len(stored(restarted.settings, tenant)) == expected_bar_count(), timeout_s=120,
               what="the restarted worker's bars")

    clean_dir = tmp_path / "clean"
    group = "clean-" + uuid.uuid4().hex[:8]
    clean = worker_factory(**SHORT, group_id=group, app_id=group + "-app",
                           clickhouse_dsn=f"chdb://{clean_dir / 'clickhouse'}", state_dir=clean_dir / "state")
    wait_until(lambda: len(stored(clean.settings, tenant)) == expected_bar_count(), timeout_s=120,
               what="the clean run's bars")
    reference = fingerprint(clean.settings, tenant)
    assert sum(len(r["bits"]) for r in reference) > 2 * 80 * len(SHORT_SPEC.names)
    wait_until(lambda: fingerprint(restarted.settings, tenant) == reference, timeout_s=60,
               what="the killed run's indicators to equal the clean run's, bit for bit")

    replayed = load_settings(**{**clean.settings.model_dump(), "clickhouse_dsn": f"chdb://{tmp_path / 'replayed'}",
                                "state_dir": tmp_path / "replay-state"})
    done = subprocess.run([sys.executable, "-m", "pipeline", "replay", "--stages", "ingest", "--tenant", tenant,
                           "--sinks", "analytics"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **settings_env(replayed)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert fingerprint(replayed, tenant) == reference
