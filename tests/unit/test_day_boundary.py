"""Daily bars follow each broker's trading day (TICKWIRE_BROKER_DAY_OFFSETS): windows, the bar clock, the bars
query's parameters, settings; and the candle builder's indicator history (one query per timeframe)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any

import pytest

from pipeline.config import SettingsError, load_settings
from pipeline.contracts.indicators import IndicatorSpec
from pipeline.contracts.timeframes import DAY_MS, Timeframe, TradingDays, parse_day_offsets
from pipeline.derive.bar_clock import BarClock, BarWindow, ClockEvents
from pipeline.derive.candles import BARS_SQL, DAY_SQL, HISTORY_SQL, CandleBuilder
from pipeline.derive.indicators import BarPoint, series_indicators, series_vwap_sums
from pipeline.stores.series_filter import series_filter

HOUR = 3_600_000
MINUTE = 60_000
DAY, H1, M1 = Timeframe.parse("1d"), Timeframe.parse("1h"), Timeframe.parse("1m")
DEMO = ("acme", "demo", "EURUSD")  # a broker on UTC+2
PLAIN = ("acme", "plain", "EURUSD")  # a broker not named: UTC midnight
DAYS = TradingDays(parse_day_offsets("demo=+2,icm=+3"))


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() * 1000)


@pytest.mark.parametrize(("tick", "bar_start"), [
    ("2025-11-20 21:59:59.999", "2025-11-19 22:00"),  # 23:59:59 on the server: still Thursday the 20th there
    ("2025-11-20 22:00:00.000", "2025-11-20 22:00"),  # 00:00 on the server: Friday the 21st begins
    ("2025-11-20 23:59:00.000", "2025-11-20 22:00"),
])
def test_a_utc_plus_2_brokers_day_starts_at_22_utc(tick: str, bar_start: str) -> None:
    assert DAYS.window_start("demo", DAY, utc(tick)) == utc(bar_start)
    assert DAYS.day_start("demo", utc(tick)) == utc(bar_start)
    assert DAYS.window_start("plain", DAY, utc(tick)) == utc(tick[:10] + " 00:00")
    assert DAYS.window_start("demo", H1, utc(tick)) == utc(tick[:13] + ":00"), "below a day: epoch-aligned"
    assert DAYS.window_start("icm", DAY, utc(tick)) == utc(("2025-11-19" if tick < "2025-11-20 21" else "2025-11-20")
                                                         + " 21:00")


def test_longer_timeframes_and_negative_offsets_follow_the_trading_day_too() -> None:
    west = TradingDays(parse_day_offsets("ny=-5"))
    assert west.window_start("ny", DAY, utc("2025-11-21 04:59")) == utc("2025-11-20 05:00")
    assert west.window_start("ny", DAY, utc("2025-11-21 05:00")) == utc("2025-11-21 05:00")
    week = Timeframe.parse("7d")
    start = DAYS.window_start("demo", week, utc("2025-11-20 23:00"))
    assert (start + 2 * HOUR) % DAY_MS == 0 and start <= utc("2025-11-20 23:00") < start + week.ms


def test_the_bar_clock_closes_daily_bars_at_the_brokers_boundary_and_weekends_make_no_bars() -> None:
    clock = BarClock([H1, DAY], 0, DAYS)
    events = ClockEvents()
    for series in (DEMO, PLAIN):
        for t in ("2025-11-20 21:59", "2025-11-20 22:00", "2025-11-20 23:59",   # Thu
                  "2025-11-21 20:30",                                          # Fri, the last tick of the week
                  "2025-11-23 22:05", "2025-11-24 00:10"):                     # Mon 00:05 / 02:10 server time
            clock.observe(series, utc(t), events)
    daily = sorted((w.broker, datetime.fromtimestamp(w.start_ms / 1000, timezone.utc).strftime("%a %H:%M"))
                   for w in events.closed if w.timeframe == "1d")
    assert daily == [("demo", "Thu 22:00"), ("demo", "Wed 22:00"),  # Thu's day, Fri's day; nothing for the weekend
                     ("plain", "Fri 00:00"), ("plain", "Sun 00:00"), ("plain", "Thu 00:00")]
    hourly = {w.start_ms for w in events.closed if w.timeframe == "1h" and w.broker == "demo"}
    assert hourly == {utc(t) for t in ("2025-11-20 21:00", "2025-11-20 22:00", "2025-11-20 23:00", "2025-11-21 20:00",
                                       "2025-11-23 22:00")}, "bars only where ticks are: none over the weekend"
    assert clock.open_start(DEMO, DAY) == utc("2025-11-23 22:00")


def test_the_day_offsets_setting_is_checked_at_start_and_named_in_the_error() -> None:
    assert load_settings(broker_day_offsets="demo=+2, icmarkets=+3").trading_days.offsets == {
        "demo": 2 * HOUR, "icmarkets": 3 * HOUR}
    assert load_settings(broker_day_offsets="x=+5.5").trading_days.offset_ms("x") == 5 * HOUR + 30 * MINUTE
    for bad in ("demo", "demo=+2h", "demo=+15", "demo=+2,demo=+3", "a:b=+2", "demo=+2.1"):
        with pytest.raises(SettingsError, match="TICKWIRE_BROKER_DAY_OFFSETS"):
            load_settings(broker_day_offsets=bad)


def test_daily_bars_are_on_by_default_and_the_shortest_timeframe_stays_first() -> None:
    settings = load_settings()
    assert settings.candle_timeframes == "1m,5m,1h,1d"
    assert [tf.name for tf in settings.timeframes] == ["1m", "5m", "1h", "1d"]
    # the enricher's similar patterns and every "default timeframe" use timeframes[0]: the shortest
    assert settings.timeframes[0].name == "1m" and load_settings(candle_timeframes="1d,1h").timeframes[0].name == "1h"


def test_indicator_settings_are_checked_at_start() -> None:
    settings = load_settings(indicator_sma_periods="10, 30", indicator_ema_periods="", indicator_window_bars=40)
    assert settings.indicators == IndicatorSpec((10, 30), (), 40)
    assert settings.indicators.names[:2] == ("sma_10", "sma_30") and "ema_20" not in settings.indicators.names
    with pytest.raises(SettingsError, match="TICKWIRE_INDICATOR_WINDOW_BARS"):
        load_settings(indicator_window_bars=30)  # MACD's signal needs 34 bars
    with pytest.raises(SettingsError, match="TICKWIRE_INDICATOR_EMA_PERIODS"):
        load_settings(indicator_ema_periods="20,20")


class FakeSession:
    """Answers the candle builder's queries from canned rows, and records them."""

    database = "tw"

    def __init__(self, history: list[tuple[Any, ...]] = ()) -> None:
        self.history = list(history)
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def query(self, sql: str, parameters: dict[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
        self.calls.append((sql, parameters))
        return [], self.history if sql.startswith(HISTORY_SQL.replace("{db}", "tw")[:40]) else []


class Record:
    topic, partition, offset, timestamp, key, value = "t", 0, 0, 0, b"", b""


def ticks_at(series: tuple[str, str, str], *times: int) -> list[tuple[Record, Any]]:
    class T:
        tenant, broker, symbol = series

        def __init__(self, t: int) -> None:
            self.time_msc = t
    return [(Record(), T(t)) for t in times]


async def test_the_bars_query_shifts_only_daily_windows_of_brokers_with_an_offset() -> None:
    session = FakeSession()
    builder = CandleBuilder(session, None, [M1, DAY], 0, trading_days=DAYS)  # type: ignore[arg-type]
    await builder.compute(DAY, [BarWindow(*DEMO, "1d", utc("2025-11-20 22:00")), BarWindow(*PLAIN, "1d", utc("2025-11-21 00:00"))])
    await builder.compute(M1, [BarWindow(*DEMO, "1m", utc("2025-11-20 22:00"))])
    (daily_sql, daily), (_, minute) = session.calls
    assert daily_sql.startswith(BARS_SQL.replace("{db}", "tw").split("{series_filter}")[0]) and "+ shift" in daily_sql
    assert (daily["brokers"], daily["shifts"]) == (["demo"], [2 * HOUR])
    assert (minute["brokers"], minute["shifts"]) == ([], [])


def test_an_amended_bar_queues_the_closed_bars_after_it_when_lateness_reaches_past_a_bar() -> None:
    builder = CandleBuilder(FakeSession(), None, [M1], 150_000)  # type: ignore[arg-type]
    t0 = utc("2025-11-20 10:00")
    builder.track(ticks_at(DEMO, t0 + 10, t0 + MINUTE + 10, t0 + 2 * MINUTE + 10, t0 + 2 * MINUTE + 20_000))
    assert builder.pending == 1 + 2  # first seen; the 10:00 and 10:01 bars closed
    builder._pending.clear()  # as a flush does
    builder.track(ticks_at(DEMO, t0 + 30))  # late into 10:00 (within 150 s): amends it, and 10:01 reads it
    windows = sorted(w.start_ms for w in builder._pending)
    assert windows == [t0, t0 + MINUTE]
    tight = CandleBuilder(FakeSession(), None, [M1], 5_000)  # type: ignore[arg-type]
    tight.track(ticks_at(DEMO, t0 + 59_000, t0 + MINUTE + 1_000))
    tight._pending.clear()
    tight.track(ticks_at(DEMO, t0 + 58_000))  # the usual case: the amended bar is the one before the open bar
    assert sorted(w.start_ms for w in tight._pending) == [t0]


async def test_indicators_read_the_history_once_per_timeframe_with_the_new_bars_standing_in_for_stored_ones() -> None:
    from pipeline.contracts.schemas import Candle

    t0 = utc("2025-11-20 10:00")
    stored = [BarPoint(t0 + i * MINUTE, 1.1 + i * 1e-4 + 2e-4, 1.1 + i * 1e-4 - 2e-4, 1.1 + i * 1e-4 * (-1) ** i, 3, 0.0)
              for i in range(80)]
    demo_sums = series_vwap_sums(stored, range(80), lambda t: DAYS.day_start("demo", t))
    rows = [(*DEMO, b.start_ms, b.high, b.low, b.close, b.ticks, b.volume_real, demo_sums[i].stored())
            for i, b in enumerate(stored)]
    rows += [(*PLAIN, b.start_ms, b.high, b.low, b.close, b.ticks, b.volume_real, []) for b in stored]  # stored before sums
    session = FakeSession(rows)
    spec = IndicatorSpec(window_bars=50)
    builder = CandleBuilder(session, None, [M1], 0, trading_days=DAYS, indicators=spec)  # type: ignore[arg-type]

    def bar(series: tuple[str, str, str], i: int, close: float) -> Candle:
        return Candle(v=1, tenant=series[0], broker=series[1], symbol=series[2], timeframe="1m", start_ms=t0 + i * MINUTE,
                      end_ms=t0 + (i + 1) * MINUTE, open=close, high=close + 1e-4, low=close - 1e-4, close=close,
                      bid_close=close, ask_close=close, spread_avg=0.0, spread_min=0.0, spread_max=0.0, ticks=5, volume=0,
                      volume_real=0.0)

    new = [bar(DEMO, 79, 1.2), bar(DEMO, 80, 1.21), bar(PLAIN, 80, 1.3)]  # DEMO's 79 replaces its stored row (amended)
    done = await builder.with_indicators(M1, new)
    (history_sql, history), (day_sql, day) = session.calls  # the history of both series at once; PLAIN's day
    assert history_sql.startswith(HISTORY_SQL.replace("{db}", "tw").split("{series_filter}")[0])
    assert day_sql == DAY_SQL.replace("{db}", "tw")
    _, both = series_filter([DEMO, PLAIN])
    assert {name: history[name] for name in both} == both and history["before"] == 50
    assert history["lo"] == t0 + 79 * MINUTE and history["hi"] == t0 + 80 * MINUTE
    assert day["ranges"] == [(*PLAIN, utc("2025-11-20 00:00"), t0)], "only the series without stored sums"
    assert all(b.v == 2 and set(b.indicator_values) == set(spec.names) for b in done)

    for series, sums in ((DEMO, demo_sums), (PLAIN, None)):
        points = {b.start_ms: (b if sums is None else dataclasses.replace(b, vwap_sums=sums[i])) for i, b in enumerate(stored)}
        for b in (b for b in new if (b.tenant, b.broker, b.symbol) == series):
            points[b.start_ms] = BarPoint(b.start_ms, b.high, b.low, b.close, 5, 0.0)
        merged = [points[s] for s in sorted(points)]
        starts = {b.start_ms for b in new if (b.tenant, b.broker, b.symbol) == series}
        targets = [i for i, p in enumerate(merged) if p.start_ms in starts]
        expected = series_indicators(merged, targets, spec, lambda t: DAYS.day_start(series[1], t))
        got = [b.indicators for b in done if (b.tenant, b.broker, b.symbol) == series]
        assert got == [expected[i][0] for i in targets]
        assert [builder._sums[(*series, "1m", merged[i].start_ms)] for i in targets] == [expected[i][1] for i in targets]
