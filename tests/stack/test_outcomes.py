"""Signal outcomes end to end on the real stack: ticks over more than an hour of event time and signals at
known prices → stored and published outcomes equal an independent computation from the produced ticks,
each passed horizon exactly once (also across a SIGKILL), a late signal gets its outcomes, the performance
API aggregates them for the caller's tenant only, and a replay into empty stores computes the same."""

from __future__ import annotations

import asyncio
import json
import math
import random
import signal as signals
import statistics
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import redis

from pipeline.config import Settings, load_settings
from pipeline.contracts.topics import OUTCOMES_TOPIC
from pipeline.ingest.producer import MT5Producer
from pipeline.ops.sql_client import worker_query
from tests.api_support import ApiClient, issue_key
from tests.stack.test_replay import rows as chdb_rows
from tests.stack.test_replay import run as run_cli
from tests.stack.test_ticks_pipeline import produce as produce_ticks
from tests.topic_reader import read_topic
from tests.waiting import wait_until

pytestmark = pytest.mark.stack

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
T0 = 1_763_899_200_000  # a minute boundary
MINUTE = 60_000
HORIZONS = {"5m": 5 * MINUTE, "1h": 60 * MINUTE, "1d": 1440 * MINUTE}
WORKER = dict(candle_timeframes="1m,5m", outcome_horizons="5m,1h,1d")
SYMBOLS = {"EURUSD": 1.1, "XAUUSD": 2650.0}


# --- what the test produces, and what it expects, computed here from the produced ticks --------------------


def make_ticks(tenant: str, minutes: int, seed: int) -> list[dict[str, Any]]:
    """A random walk per symbol, a tick every 2 s over ``minutes`` minutes, plus one millisecond holding two more
    ticks: a spike up and a spike down (a buy's tp and sl in the same millisecond). In time order (as produced)."""
    rng = random.Random(seed)
    ticks = []
    for symbol, start in SYMBOLS.items():
        mid = start
        for i in range(minutes * 30 + 1):
            mid *= math.exp(rng.gauss(0, 1.2e-4))
            spread = round(start * rng.uniform(1e-5, 4e-5), 6)
            time_ms = T0 + i * 2_000 + rng.randrange(0, 1_500)
            ticks.append(dict(tenant=tenant, broker="demo", symbol=symbol, time_msc=time_ms, bid=round(mid, 6),
                              ask=round(mid + spread, 6), flags=6))
            if symbol == "EURUSD" and i == 300:  # T0 + 10 min: both spikes at once
                for factor in (1.01, 0.99):
                    ticks.append(dict(tenant=tenant, broker="demo", symbol=symbol, time_msc=time_ms, bid=round(mid * factor, 6),
                                      ask=round(mid * factor + spread, 6), flags=6))
    return sorted(ticks, key=lambda t: t["time_msc"])  # stable: the spikes stay after their millisecond's first tick


def mid_at(ticks: list[dict[str, Any]], symbol: str, time_ms: int) -> float:
    before = [t for t in ticks if t["symbol"] == symbol and t["time_msc"] <= time_ms]
    return (before[-1]["bid"] + before[-1]["ask"]) / 2


def make_signals(tenant: str, ticks: list[dict[str, Any]], late: bool = False) -> list[dict[str, Any]]:
    """Signals of two strategies on both symbols, at known prices, with levels near and far (so that some reach
    tp first, some sl first, some neither), without price, without levels, and close/hold."""
    rng = random.Random(7 if not late else 8)
    found = []
    plans = [("buy", True, 0.0012, 0.0012), ("sell", True, 0.0012, 0.0012), ("buy", False, 0.0008, 0.003),
             ("sell", False, 0.003, 0.0008), ("buy", True, 0.02, 0.02), ("sell", True, None, None),
             ("close", True, None, None), ("hold", False, 0.001, 0.001), ("buy", True, 0.0006, 0.0006),
             ("sell", True, 0.0006, 0.0006)]
    for symbol in SYMBOLS:
        for n, (action, priced, tp_at, sl_at) in enumerate(plans):
            minute = rng.randrange(1, 72) if not late else rng.randrange(1, 15)
            time_ms = T0 + minute * MINUTE + rng.randrange(0, MINUTE)
            mid = mid_at(ticks, symbol, time_ms)
            direction = 1 if action == "buy" else -1
            entry = round(mid, 6)
            found.append(dict(
                id=f"{'late' if late else 'sig'}-{symbol}-{n}", tenant=tenant, broker="demo",
                strategy="meanrev" if n % 2 else "breakout", symbol=symbol, time_msc=time_ms, action=action,
                confidence=0.5, price=entry if priced else None,
                tp=None if tp_at is None else round(entry * (1 + direction * tp_at), 6),
                sl=None if sl_at is None else round(entry * (1 - direction * sl_at), 6)))
    if not late:  # a buy just before the millisecond with both spikes: tp and sl in one millisecond: sl
        times = [t["time_msc"] for t in ticks if t["symbol"] == "EURUSD"]
        spike_ms = next(time_ms for time_ms in times if times.count(time_ms) == 3)
        entry = round(mid_at(ticks, "EURUSD", spike_ms - 1), 6)
        found.append(dict(id="sig-tie", tenant=tenant, broker="demo", strategy="breakout", symbol="EURUSD",
                          time_msc=spike_ms - 1, action="buy", confidence=0.9, price=entry,
                          tp=round(entry * 1.005, 6), sl=round(entry * 0.995, 6)))
    return found


def passed_until(ticks: list[dict[str, Any]]) -> dict[str, int]:
    """Per symbol, the end of the newest closed bar: the start of the minute of its last tick."""
    return {symbol: max(t["time_msc"] for t in ticks if t["symbol"] == symbol) // MINUTE * MINUTE
            for symbol in {t["symbol"] for t in ticks}}


def expected_outcomes(ticks: list[dict[str, Any]], signals_: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """Every passed (signal, horizon) → its outcome, computed here from the produced ticks (in production order)."""
    passed = passed_until(ticks)
    series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for tick in ticks:
        series[tick["symbol"]].append(tick)
    for symbol in series:
        series[symbol].sort(key=lambda t: t["time_msc"])  # stable: production order within a millisecond
    out = {}
    for s in signals_:
        direction = {"buy": 1, "sell": -1}.get(s["action"], 0)
        for name, horizon in HORIZONS.items():
            end = s["time_msc"] + horizon
            if end > passed[s["symbol"]]:
                continue
            window = [t for t in series[s["symbol"]] if s["time_msc"] <= t["time_msc"] < end]
            mids = [(t["bid"] + t["ask"]) / 2 for t in window]
            entry = s["price"] if s["price"] is not None else (mids[0] if mids else None)
            move = (mids[-1] - entry) / entry if window and entry is not None else None
            tp_hit = sl_hit = mae = None
            if direction:
                closing = [t["bid"] if direction == 1 else t["ask"] for t in window]
                if s["tp"] is not None:
                    tp_hit = next((t["time_msc"] for t, p in zip(window, closing) if direction * (p - s["tp"]) >= 0), None)
                if s["sl"] is not None:
                    sl_hit = next((t["time_msc"] for t, p in zip(window, closing) if direction * (s["sl"] - p) >= 0), None)
                if window and entry is not None:
                    worst = min(closing) if direction == 1 else max(closing)
                    mae = max(0.0, direction * (entry - worst) / entry)
            first = None
            if sl_hit is not None and (tp_hit is None or sl_hit <= tp_hit):
                first = ("sl", sl_hit)
            elif tp_hit is not None:
                first = ("tp", tp_hit)
            out[s["id"], horizon] = dict(
                signal_id=s["id"], horizon=name, horizon_ms=horizon, broker="demo", strategy=s["strategy"],
                symbol=s["symbol"], action=s["action"], signal_time_msc=s["time_msc"], horizon_end_msc=end, entry=entry,
                entry_source=None if entry is None else ("price" if s["price"] is not None else "first_tick"),
                tp=s["tp"], sl=s["sl"], exit_mid=mids[-1] if window else None,
                exit_time_msc=window[-1]["time_msc"] if window else None, move=move,
                directed_return=move * direction if move is not None and direction else None,
                tp_hit_msc=tp_hit, sl_hit_msc=sl_hit, first_hit=first and first[0], first_hit_msc=first and first[1],
                mae=mae, ticks=len(window))
    return out


# --- reading what the pipeline made ------------------------------------------------------------------------

STORED_SQL = """
SELECT signal_id, horizon, horizon_ms, broker, strategy, symbol, action,
       toUnixTimestamp64Milli(signal_time) AS signal_time_msc, toUnixTimestamp64Milli(horizon_end) AS horizon_end_msc,
       entry, entry_source, tp, sl, exit_mid, toUnixTimestamp64Milli(exit_time) AS exit_time_msc, move, directed_return,
       toUnixTimestamp64Milli(tp_hit_time) AS tp_hit_msc, toUnixTimestamp64Milli(sl_hit_time) AS sl_hit_msc, first_hit,
       toUnixTimestamp64Milli(first_hit_time) AS first_hit_msc, mae, ticks
FROM tickwire.signal_outcomes FINAL WHERE tenant = '{tenant}' ORDER BY signal_id, horizon_ms
"""


def stored(worker, tenant: str) -> dict[tuple[str, int], dict[str, Any]]:
    lines = worker_query(worker.settings, STORED_SQL.format(tenant=tenant))
    assert lines is not None, "the worker did not answer"
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for line in lines:
        row = orjson.loads(line)
        assert (row["signal_id"], row["horizon_ms"]) not in found, f"{row['signal_id']} {row['horizon']} visible twice"
        found[row["signal_id"], row["horizon_ms"]] = row
    return found


def count(worker, sql: str) -> int:
    lines = worker_query(worker.settings, sql)
    assert lines is not None, "the worker did not answer"
    return next(iter(orjson.loads(lines[0]).values()))


def assert_same(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    """Equal: strings, times and counts exactly, numbers to 1e-12 relative (summation order may differ)."""
    assert set(actual) >= set(expected), set(expected) - set(actual)
    for name, value in expected.items():
        if isinstance(value, float):
            assert actual[name] == pytest.approx(value, rel=1e-12, abs=1e-15), (expected["signal_id"], expected["horizon"], name)
        else:
            assert actual[name] == value, (expected["signal_id"], expected["horizon"], name, actual[name], value)


async def produce_signals(settings: Settings, signals_: list[dict[str, Any]]) -> None:
    async with MT5Producer(settings) as producer:
        for s in signals_:
            await producer.send_signal(**s)


def outcome_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((SCHEMAS / "signal.outcome.v1.json").read_text()))


def performance(outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The performance API's answer, computed here: per (strategy, symbol, horizon), buy/sell with a return."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for o in outcomes:
        if o["action"] in ("buy", "sell") and o["directed_return"] is not None:
            groups[o["strategy"], o["symbol"], o["horizon_ms"]].append(o)
    answer = []
    for (strategy, symbol, horizon_ms), group in sorted(groups.items()):
        returns = [o["directed_return"] for o in group]
        tp_first = sum(o["first_hit"] == "tp" for o in group)
        answer.append(dict(strategy=strategy, symbol=symbol, horizon=group[0]["horizon"], horizon_ms=horizon_ms,
                           count=len(group), tp_first=tp_first, sl_first=sum(o["first_hit"] == "sl" for o in group),
                           hit_rate=tp_first / len(group), mean_return=statistics.fmean(returns),
                           median_return=statistics.median(returns),
                           max_adverse_excursion=max(o["mae"] for o in group)))
    return answer


def assert_same_performance(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [(a["strategy"], a["symbol"], a["horizon_ms"]) for a in actual] == \
        [(e["strategy"], e["symbol"], e["horizon_ms"]) for e in expected]
    for a, e in zip(actual, expected):
        for name, value in e.items():
            if isinstance(value, float):
                assert a[name] == pytest.approx(value, rel=1e-9, abs=1e-15), (e["strategy"], e["symbol"], name)
            else:
                assert a[name] == value, (e["strategy"], e["symbol"], name)


# --- the tests -------------------------------------------------------------------------------------------


def test_outcomes_equal_an_independent_computation_are_published_and_a_late_signal_gets_its_own(
        stack_settings, worker_factory, tenant):
    ticks = make_ticks(tenant, minutes=80, seed=3)
    sent = make_signals(tenant, ticks)
    expected = expected_outcomes(ticks, sent)
    kinds = {(o["first_hit"], o["action"]) for o in expected.values()}
    assert {("tp", "buy"), ("sl", "buy"), ("tp", "sell"), ("sl", "sell"), (None, "buy")} <= kinds, \
        "the data reaches tp first, sl first and neither, for both directions"
    assert expected["sig-tie", HORIZONS["5m"]]["first_hit"] == "sl" and \
        expected["sig-tie", HORIZONS["5m"]]["tp_hit_msc"] == expected["sig-tie", HORIZONS["5m"]]["sl_hit_msc"]
    assert {h for _, h in expected} == {HORIZONS["5m"], HORIZONS["1h"]}, "5m and 1h pass, 1d does not"

    worker = worker_factory(**WORKER)
    asyncio.run(produce_signals(stack_settings, sent))  # signals first: their horizons pass as the ticks come
    asyncio.run(produce_ticks(stack_settings, ticks))
    wait_until(lambda: len(stored(worker, tenant)) == len(expected), timeout_s=120,
               what=f"{len(expected)} outcomes")
    found = stored(worker, tenant)
    assert set(found) == set(expected)
    for key, outcome in expected.items():
        assert_same(found[key], outcome)
    assert count(worker, f"SELECT count() FROM tickwire.signal_outcomes FINAL WHERE tenant = '{tenant}'") == len(expected)

    # published: every outcome at least once (duplicates are allowed: consumers deduplicate by identity), valid, equal
    messages = [orjson.loads(v) for _, v in asyncio.run(read_topic(stack_settings, OUTCOMES_TOPIC, f"{tenant}:".encode(),
                                                                   len(expected), timeout_s=30))]
    validator = outcome_validator()
    for message in messages:
        validator.validate(message)
        assert message["tenant"] == tenant and isinstance(message["signal_time_msc"], int)
        assert_same(message, expected[message["signal_id"], message["horizon_ms"]])
    assert {(m["signal_id"], m["horizon_ms"]) for m in messages} == set(expected)

    # a late signal: produced after its horizons passed, it gets them at once (and not 1d)
    late = make_signals(tenant, ticks, late=True)
    late_expected = expected_outcomes(ticks, late)
    assert {h for _, h in late_expected} == {HORIZONS["5m"], HORIZONS["1h"]}
    asyncio.run(produce_signals(stack_settings, late))
    wait_until(lambda: len(stored(worker, tenant)) == len(expected) + len(late_expected), timeout_s=60,
               what="the late signals' outcomes")
    found = stored(worker, tenant)
    for key, outcome in late_expected.items():
        assert_same(found[key], outcome)

    # the performance API: the test's own aggregation, for the caller's tenant only
    everything = [*expected.values(), *late_expected.values()]
    client = ApiClient(worker.settings.api_url, issue_key(stack_settings, tenant).key)
    answer = client.get("/v1/strategies/performance")
    assert answer.status == 200, answer.body
    assert_same_performance(answer.body["data"], performance(everything))
    narrowed = client.data("/v1/strategies/performance", strategy="meanrev", symbol="XAUUSD", horizon="1h")
    assert_same_performance(narrowed, performance([o for o in everything if o["strategy"] == "meanrev" and
                                                   o["symbol"] == "XAUUSD" and o["horizon"] == "1h"]))
    assert client.data("/v1/strategies/performance", horizon="1d") == []
    assert client.data("/v1/strategies/performance", strategy="nosuch") == []
    assert client.get("/v1/strategies/performance", horizon="2h").body["parameter"] == "horizon"
    assert client.get("/v1/strategies/performance", strategy="a b").status == 400
    other = ApiClient(worker.settings.api_url, issue_key(stack_settings, tenant + "x").key)
    for params in ({}, {"strategy": "meanrev"}, {"symbol": "EURUSD", "horizon": "5m"}):
        assert other.data("/v1/strategies/performance", **params) == [], "another tenant's key sees nothing"
    assert client.get("/v1/strategies/performance", tenant=tenant + "x").status == 400


def test_every_passed_horizon_exactly_once_across_a_sigkill_and_a_restart(stack_settings, worker_factory, tenant):
    ticks = make_ticks(tenant, minutes=70, seed=5)
    sent = make_signals(tenant, ticks)
    expected = expected_outcomes(ticks, sent)
    worker = worker_factory(**WORKER)
    asyncio.run(produce_signals(stack_settings, sent))
    producing = threading.Thread(target=lambda: asyncio.run(produce_ticks(stack_settings, ticks, chunk_pause_s=1.5)))
    producing.start()
    try:
        seen = wait_until(lambda: len(stored(worker, tenant)), timeout_s=90, what="the first outcomes")
        worker.stop(signals.SIGKILL)
        assert seen < len(expected), "the worker must die mid-run"
        restarted = worker_factory(**WORKER)
    finally:
        producing.join()
    wait_until(lambda: len(stored(restarted, tenant)) == len(expected), timeout_s=120, what=f"{len(expected)} outcomes")
    found = stored(restarted, tenant)  # asserts no (signal, horizon) is visible twice
    assert set(found) == set(expected)
    for key, outcome in expected.items():
        assert_same(found[key], outcome)
    duplicated = count(restarted, "SELECT count() FROM (SELECT signal_id, horizon_ms FROM tickwire.signal_outcomes FINAL "
                                  f"WHERE tenant = '{tenant}' GROUP BY signal_id, horizon_ms HAVING count() > 1)")
    assert duplicated == 0


def test_a_replay_into_empty_stores_computes_the_same_outcomes(stack_settings, worker_factory, tenant, tmp_path):
    ticks = make_ticks(tenant, minutes=66, seed=9)
    sent = make_signals(tenant, ticks)
    expected = expected_outcomes(ticks, sent)
    worker = worker_factory(**WORKER)
    asyncio.run(produce_signals(stack_settings, sent))
    asyncio.run(produce_ticks(stack_settings, ticks))
    wait_until(lambda: len(stored(worker, tenant)) == len(expected), timeout_s=120, what="the live outcomes")
    live = [orjson.loads(line) for line in worker_query(worker.settings, STORED_SQL.format(tenant=tenant)) or []]
    worker.stop()

    # empty stores: a new chDB directory (and cache database); the outcomes stage replays from what the live
    # pipeline published (bars, enriched signals) over the ticks and signals the replay stored again
    replay_settings = load_settings(**{**worker.settings.model_dump(), "clickhouse_dsn": f"chdb://{tmp_path / 'replayed'}",
                                       "cache_url": stack_settings.cache_url.rsplit("/", 1)[0] + "/2", **WORKER})
    redis.Redis.from_url(replay_settings.cache_connection_url).flushdb()
    result = run_cli(replay_settings, "replay", "--stages", "ingest,signals,outcomes", "--tenant", tenant,
                     "--sinks", "analytics", timeout_s=300)
    assert result.returncode == 0, result.stdout + result.stderr
    replayed = chdb_rows(replay_settings, " ".join(STORED_SQL.format(tenant=tenant).split()))
    assert replayed == live and len(live) == len(expected)
    for row in replayed:
        assert_same(row, expected[row["signal_id"], row["horizon_ms"]])


def test_a_late_tick_that_amends_a_bar_recomputes_the_outcomes_it_changes(stack_settings, worker_factory, tenant):
    """A tick later than the one that passed a horizon, but within the lateness: its bar is amended and
    republished, and the outcome whose window it falls in is recomputed (its version, the tick count, grows)."""
    horizon_end = T0 + 10 * MINUTE
    ticks = [dict(tenant=tenant, broker="demo", symbol="EURUSD", time_msc=T0 + i * 2_000 + 500, bid=round(1.1 + (i % 3) * 1e-5, 6),
                  ask=round(1.1002 + (i % 3) * 1e-5, 6), flags=6) for i in range(300)]
    ticks.append(dict(ticks[-1], time_msc=horizon_end + 1_000))  # closes the bars ending at the horizon's end
    sent = [dict(id="sig-amended", tenant=tenant, broker="demo", strategy="meanrev", symbol="EURUSD", time_msc=T0 + 5 * MINUTE,
                 action="buy", confidence=0.5, price=1.1001, tp=1.1030, sl=1.0900)]
    late = dict(ticks[0], time_msc=horizon_end - 2_000, bid=1.1040, ask=1.1042)  # 3 s behind the watermark: amends
    before, after = expected_outcomes(ticks, sent), expected_outcomes([*ticks, late], sent)
    key = ("sig-amended", HORIZONS["5m"])
    assert list(before) == [key] and before[key]["first_hit"] is None and after[key]["first_hit"] == "tp"

    worker = worker_factory(**WORKER)
    asyncio.run(produce_signals(stack_settings, sent))
    asyncio.run(produce_ticks(stack_settings, ticks))
    wait_until(lambda: key in stored(worker, tenant), timeout_s=90, what="the outcome")
    assert_same(stored(worker, tenant)[key], before[key])
    asyncio.run(produce_ticks(stack_settings, [late]))
    wait_until(lambda: stored(worker, tenant)[key]["ticks"] == after[key]["ticks"], timeout_s=60,
               what="the outcome recomputed with the late tick")
    assert_same(stored(worker, tenant)[key], after[key])
    assert after[key]["tp_hit_msc"] == horizon_end - 2_000

