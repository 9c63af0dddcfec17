"""Signal outcomes without servers: the arithmetic (entry, direction, tp/sl first, adverse excursion), the
horizons setting, which outcomes the builder finds due, and what it publishes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agents.outcomes
from pipeline.config import SettingsError, load_settings
from pipeline.contracts.schemas import Candle, EnrichedSignal, Signal, SignalOutcome
from pipeline.contracts.timeframes import Timeframe
from pipeline.contracts.topics import OUTCOMES_TOPIC
from pipeline.derive.outcomes import (
    NO_TICKS,
    RANGES_SQL,
    SERIES_HASHES_SQL,
    SIGNALS_SQL,
    TICK_ROW,
    TICKS_SQL,
    OutcomeBuilder,
    OutcomeRows,
    SeriesTicks,
    StoredSignal,
    WindowStats,
    first_hit,
    outcome,
    parse_horizons,
    window_stats,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
T = 1_763_900_000_000
FIVE = Timeframe.parse("5m")


def signal(action: str = "buy", price: float | None = 1.1000, tp: float | None = 1.1050, sl: float | None = 1.0950,
           **overrides: Any) -> StoredSignal:
    fields: dict[str, Any] = dict(tenant="acme", id="s-1", broker="demo", strategy="meanrev", symbol="EURUSD", time_ms=T,
                                  action=action, price=price, sl=sl, tp=tp)
    fields.update(overrides)
    return StoredSignal(**fields)


def of(s: StoredSignal, ticks: list[tuple[int, float, float]], horizon: Timeframe = FIVE) -> SignalOutcome:
    return outcome(s, horizon, window_stats(s, ticks))


# --- horizons ----------------------------------------------------------------------------------------------


def test_horizons_parse_like_timeframes_shortest_first() -> None:
    assert [(h.name, h.ms) for h in parse_horizons("1d, 5m,1h")] == [("5m", 300_000), ("1h", 3_600_000), ("1d", 86_400_000)]
    assert [h.ms for h in parse_horizons("30s")] == [30_000]
    for bad in ("", " , ", "5x", "0m", "5", "1h,60m", "5m,5m"):
        with pytest.raises(ValueError):
            parse_horizons(bad)


def test_the_horizons_setting_defaults_to_5m_1h_1d_and_is_checked_at_start() -> None:
    assert [h.name for h in load_settings().outcome_horizon_list] == ["5m", "1h", "1d"]
    assert load_settings(outcome_horizons="1h, 15m").outcome_horizons == "1h,15m"
    assert [h.ms for h in load_settings(outcome_horizons="1h,15m").outcome_horizon_list] == [900_000, 3_600_000]
    for bad in ("1h,60m", "soon", ""):
        with pytest.raises(SettingsError, match="TICKWIRE_OUTCOME_HORIZONS"):
            load_settings(outcome_horizons=bad)


# --- the arithmetic ----------------------------------------------------------------------------------------


def test_a_buy_whose_tp_is_reached_first_against_the_bid() -> None:
    ticks = [(T + 10, 1.0990, 1.0992), (T + 20, 1.1040, 1.1052), (T + 30, 1.1050, 1.1052), (T + 40, 1.0940, 1.0942),
             (T + 50, 1.1010, 1.1012)]
    o = of(signal(), ticks)
    assert (o.entry, o.entry_source, o.ticks) == (1.1000, "price", 5)
    assert o.exit_mid == (1.1010 + 1.1012) / 2 and o.exit_time_msc == T + 50
    assert o.move == pytest.approx(((1.1010 + 1.1012) / 2 - 1.1) / 1.1) and o.directed_return == o.move
    # the ask reached tp at T+20, but a buy closes on the bid: tp at T+30; sl (bid <= 1.095) at T+40
    assert (o.tp_hit_msc, o.sl_hit_msc, o.first_hit, o.first_hit_msc) == (T + 30, T + 40, "tp", T + 30)
    assert o.mae == pytest.approx((1.1 - 1.0940) / 1.1)
    assert (o.horizon, o.horizon_ms, o.horizon_end_msc, o.signal_time_msc) == ("5m", 300_000, T + 300_000, T)


def test_a_sell_whose_sl_is_reached_first_against_the_ask() -> None:
    s = signal("sell", price=1.1000, tp=1.0950, sl=1.1050)
    ticks = [(T + 5, 1.1040, 1.1049), (T + 6, 1.1045, 1.1050), (T + 7, 1.0900, 1.0949), (T + 8, 1.0990, 1.0992)]
    o = of(s, ticks)
    # bid 1.1045 < sl, but a sell closes on the ask: sl at T+6 (ask 1.1050 >= 1.105); tp (ask <= 1.095) at T+7
    assert (o.sl_hit_msc, o.tp_hit_msc, o.first_hit, o.first_hit_msc) == (T + 6, T + 7, "sl", T + 6)
    mid = (1.0990 + 1.0992) / 2
    assert o.move == pytest.approx((mid - 1.1) / 1.1) and o.directed_return == pytest.approx(-(mid - 1.1) / 1.1)
    assert o.directed_return is not None and o.directed_return > 0, "a sell gains when the price falls"
    assert o.mae == pytest.approx((1.1050 - 1.1) / 1.1)


def test_neither_level_reached_and_no_levels_at_all() -> None:
    ticks = [(T + 1, 1.0990, 1.0992), (T + 2, 1.1020, 1.1022)]
    o = of(signal(), ticks)
    assert (o.tp_hit_msc, o.sl_hit_msc, o.first_hit, o.first_hit_msc) == (None, None, None, None)
    bare = of(signal(tp=None, sl=None), [(T + 1, 0.5, 0.6), (T + 2, 5.0, 5.1)])
    assert (bare.tp, bare.sl, bare.first_hit, bare.tp_hit_msc, bare.sl_hit_msc) == (None, None, None, None, None)


def test_both_levels_in_the_same_millisecond_count_as_sl_and_the_earlier_tick_wins() -> None:
    same_ms = [(T + 10, 1.1060, 1.1062), (T + 10, 1.0940, 1.0942)]
    assert of(signal(), same_ms).first_hit == "sl"
    assert of(signal(), list(reversed(same_ms))).first_hit == "sl", "order within the millisecond does not matter"
    crossed = signal(tp=1.0950, sl=1.1050)  # levels on the wrong sides: one tick reaches both
    assert (of(crossed, [(T + 3, 1.1000, 1.1002)]).first_hit, of(crossed, [(T + 3, 1.1000, 1.1002)]).first_hit_msc) == \
        ("sl", T + 3)
    one_ms_apart = [(T + 10, 1.1060, 1.1062), (T + 11, 1.0940, 1.0942)]
    assert (of(signal(), one_ms_apart).first_hit, of(signal(), one_ms_apart).first_hit_msc) == ("tp", T + 10)
    assert first_hit(None, None) == (None, None) and first_hit(5, None) == ("tp", 5) and first_hit(None, 5) == ("sl", 5)
    assert first_hit(5, 5) == ("sl", 5) and first_hit(4, 5) == ("tp", 4) and first_hit(6, 5) == ("sl", 5)


def test_without_a_price_the_entry_is_the_first_ticks_mid() -> None:
    ticks = [(T + 100, 1.2000, 1.2004), (T + 200, 1.2100, 1.2104)]
    o = of(signal(price=None, tp=None, sl=None), ticks)
    assert (o.entry, o.entry_source) == ((1.2000 + 1.2004) / 2, "first_tick")
    assert o.move == pytest.approx(((1.2100 + 1.2104) / 2 - (1.2000 + 1.2004) / 2) / ((1.2000 + 1.2004) / 2))
    assert o.mae == pytest.approx(((1.2000 + 1.2004) / 2 - 1.2000) / ((1.2000 + 1.2004) / 2)), "half the spread, on the bid"


def test_a_window_without_ticks_has_no_measures() -> None:
    o = outcome(signal(price=None), FIVE, NO_TICKS)
    assert (o.entry, o.entry_source, o.exit_mid, o.move, o.directed_return, o.mae, o.first_hit, o.ticks) == \
        (None, None, None, None, None, None, None, 0)
    priced = outcome(signal(), FIVE, NO_TICKS)
    assert (priced.entry, priced.entry_source, priced.move, priced.mae) == (1.1, "price", None, None)


@pytest.mark.parametrize("action", ["close", "hold"])
def test_close_and_hold_have_a_move_but_no_direction(action: str) -> None:
    ticks = [(T + 1, 1.0940, 1.0942), (T + 2, 1.1060, 1.1062)]
    o = of(signal(action), ticks)
    assert o.move == pytest.approx(((1.1060 + 1.1062) / 2 - 1.1) / 1.1)
    assert (o.directed_return, o.mae, o.tp_hit_msc, o.sl_hit_msc, o.first_hit, o.first_hit_msc) == \
        (None, None, None, None, None, None)
    assert o.action == action and o.tp == 1.1050, "the levels are reported as sent"


def test_the_adverse_excursion_is_never_negative() -> None:
    rising = [(T + 1, 1.1010, 1.1012), (T + 2, 1.1030, 1.1032)]
    assert of(signal(), rising).mae == 0.0
    assert of(signal("sell", tp=None, sl=None), [(T + 1, 1.0980, 1.0990)]).mae == 0.0


prices = st.floats(min_value=0.5, max_value=2.0, allow_nan=False)
tick_lists = st.lists(st.tuples(st.integers(0, 300_000), prices, st.floats(0, 0.01)), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(action=st.sampled_from(["buy", "sell"]), entry=prices, distance=st.floats(0.001, 0.5), raw=tick_lists)
def test_an_sl_is_reached_exactly_when_the_adverse_excursion_reaches_it(action: str, entry: float, distance: float,
                                                                       raw: list[tuple[int, float, float]]) -> None:
    direction = 1 if action == "buy" else -1
    sl = entry - direction * distance
    if sl <= 0:
        return
    ticks = sorted((T + ms, bid, bid + spread) for ms, bid, spread in raw)
    o = of(signal(action, price=entry, tp=None, sl=sl), ticks)
    closing = [bid if direction == 1 else ask for _, bid, ask in ticks]
    worst = min(closing) if direction == 1 else max(closing)
    assert (o.sl_hit_msc is not None) == ((worst <= sl) if direction == 1 else (worst >= sl))
    assert o.mae is not None and o.mae >= 0
    if o.sl_hit_msc is not None:
        assert o.mae >= abs(entry - sl) / entry * (1 - 1e-12)
    assert o.first_hit == ("sl" if o.sl_hit_msc is not None else None)
    assert o.ticks == len(ticks) and o.exit_time_msc == ticks[-1][0]


def test_an_outcome_encodes_as_a_valid_signal_outcome_v1_with_whole_numbers_as_integers() -> None:
    validator = jsonschema.Draft202012Validator(json.loads((SCHEMAS / "signal.outcome.v1.json").read_text()))
    for o in (of(signal(), [(T + 30, 1.1050, 1.1052)]), outcome(signal("hold", price=None), FIVE, NO_TICKS),
              of(signal("sell", price=None, tp=1.09, sl=1.2), [(T + 1, 1.1, 1.1002), (T + 2, 1.08, 1.0802)])):
        encoded = json.loads(msgspec.json.encode(o))
        validator.validate(encoded)
        assert isinstance(encoded["signal_time_msc"], int) and isinstance(encoded["ticks"], int)
        assert msgspec.json.decode(msgspec.json.encode(o), type=SignalOutcome) == o
        assert o.key == "acme:demo:EURUSD"


# --- which outcomes are due ------------------------------------------------------------------------------


class Rec:
    def __init__(self, topic: str, offset: int) -> None:
        self.topic, self.partition, self.offset, self.timestamp, self.key, self.value = topic, 0, offset, 0, b"", b""


def bar(start_ms: int, minutes: int = 1, symbol: str = "EURUSD") -> Candle:
    return Candle(v=1, tenant="acme", broker="demo", symbol=symbol, timeframe=f"{minutes}m", start_ms=start_ms,
                  end_ms=start_ms + minutes * 60_000, open=1, high=1, low=1, close=1, bid_close=1, ask_close=1,
                  spread_avg=0, spread_min=0, spread_max=0, ticks=1, volume=0, volume_real=0)


class FakeSession:
    """Answers the builder's three queries from stored signals, outcomes, bars and ticks held in memory."""

    database = "tickwire"

    def __init__(self, signals: list[StoredSignal], ticks: list[tuple[int, float, float]], stored_bar_end: int,
                 done: dict[str, list[int]] | None = None) -> None:
        self.signals, self.ticks, self.stored_bar_end, self.done = signals, ticks, stored_bar_end, done or {}
        self.queries: list[str] = []
        self.colliding = False  # every series' names hash to SERIES_HASH

    @staticmethod
    def row(s: StoredSignal) -> tuple[Any, ...]:
        return (s.tenant, s.id, s.broker, s.strategy, s.symbol, s.time_ms, s.action, s.price, s.sl, s.tp)

    async def query(self, sql: str, parameters: dict[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
        if sql == RANGES_SQL.replace("{db}", "tickwire"):
            self.queries.append("ranges")
            found = []
            for s in self.signals:
                for tenant, broker, symbol, lo, hi, span_lo, span_hi in parameters["bounds"]:
                    ends = [s.time_ms + h for h in parameters["horizons"]]
                    missing = {h for h in parameters["horizons"] if lo < s.time_ms + h <= hi} - \
                        (set(self.done.get(s.id, [])) if parameters["use_done"] else set())
                    if (tenant, broker, symbol) == s.series and (missing or any(span_lo < e <= span_hi for e in ends)):
                        found.append((*self.row(s), self.done.get(s.id, [])))
            return [], found
        if sql == SIGNALS_SQL.replace("{db}", "tickwire"):
            self.queries.append("signals")
            ids = {tuple(i) for i in parameters["ids"]}
            return [], [(*self.row(s), self.stored_bar_end, self.done.get(s.id, [])) for s in self.signals
                        if (s.tenant, s.id) in ids]
        assert sql == SERIES_HASHES_SQL, sql
        return [], [(*series, SERIES_HASH if tuple(series) == SERIES or self.colliding else 1)
                    for series in parameters["series"]]

    async def query_binary(self, sql: str, parameters: dict[str, Any]) -> bytes:
        assert sql.startswith(TICKS_SQL.replace("{db}", "tickwire").split("{series_filter}")[0])
        self.queries.append("ticks")
        tenant, broker, symbol = SERIES
        selected = (tenant in parameters["series_tenants"] and broker in parameters["series_brokers"]
                    and symbol in parameters["series_symbols"]
                    and ("series_exact" not in parameters or SERIES in map(tuple, parameters["series_exact"])))
        rows = [(SERIES_HASH, ms, bid, ask) for ms, bid, ask in sorted(self.ticks, key=lambda t: t[0])
                if selected and parameters["lo"] <= ms < parameters["hi"]]
        return np.array(rows, dtype=TICK_ROW).tobytes()


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, Any]] = []

    async def add(self, topic: str, key: bytes, value: bytes, origin: Any = None) -> None:
        self.sent.append((topic, key, value, origin))


def builder(session: FakeSession, horizons: str = "5m,1h") -> tuple[OutcomeBuilder, FakePublisher, OutcomeRows]:
    publisher = FakePublisher()
    rows = OutcomeRows(session)  # type: ignore[arg-type]
    return OutcomeBuilder(session, publisher, rows, parse_horizons(horizons), 5_000, chunk=2), publisher, rows  # type: ignore[arg-type]


MINUTE = 60_000


SERIES = ("acme", "demo", "EURUSD")
SERIES_HASH = 2**64 - 3  # any UInt64 (the store's cityHash64 of the names)


def test_a_series_seen_first_is_caught_up_then_advances_from_what_was_seen() -> None:
    b, _, _ = builder(FakeSession([], [], 0))
    b.add_bars([(Rec("candles.v1", 1), bar(T)), (Rec("candles.v1", 2), bar(T, minutes=5)),
                (Rec("candles.v1", 3), bar(T + 4 * MINUTE))])
    first = b.plans()[SERIES]
    assert (first.lo, first.hi) == (-1, T + 5 * MINUTE), "first seen: everything up to the newest end not stored yet"
    assert first.recompute == [(T + MINUTE - 5_001, T + MINUTE + 5_000), (T + 5 * MINUTE - 5_001, T + 5 * MINUTE)], \
        "and, recomputed, what a bar amended before a restart changed: around each bar's end, never past what passed"
    b._clear()  # what a flush does after writing
    b.add_bars([(Rec("candles.v1", 4), bar(T + 5 * MINUTE)), (Rec("candles.v1", 5), bar(T + 6 * MINUTE))])
    plan = b.plans()[SERIES]
    assert (plan.lo, plan.hi, plan.recompute) == (T + 5 * MINUTE, T + 7 * MINUTE, []), "new bars: from what was seen"
    b._clear()
    b.add_bars([(Rec("candles.v1", 6), bar(T + 4 * MINUTE)), (Rec("candles.v1", 7), bar(T + 5 * MINUTE))])
    amended = b.plans()[SERIES]  # bars not past what was seen: amended by a late tick (or redelivered)
    assert amended.hi <= amended.lo and amended.recompute == [(T + 5 * MINUTE - 5_001, T + 5 * MINUTE + 5_000),
                                                               (T + 6 * MINUTE - 5_001, T + 6 * MINUTE + 5_000)]
    assert amended.recomputes(T + 5 * MINUTE) and amended.recomputes(T + 6 * MINUTE + 5_000)
    assert not amended.recomputes(T + 5 * MINUTE - 5_001) and not amended.recomputes(T + 5 * MINUTE + 30_000)
    assert amended.recompute_span == (T + 5 * MINUTE - 5_001, T + 6 * MINUTE + 5_000)


async def test_a_bar_makes_the_passed_horizons_due_once_and_publishes_them_before_storing() -> None:
    signals = [signal(id="a", time_ms=T), signal(id="b", time_ms=T + 2 * MINUTE, action="sell", tp=1.09, sl=1.12),
               signal(id="c", time_ms=T + 9 * MINUTE, price=None), signal(id="x", symbol="OTHER")]
    ticks = [(T + i * 1_000, 1.1 + (i % 7) * 1e-3, 1.1002 + (i % 7) * 1e-3) for i in range(0, 800)]
    session = FakeSession(signals, ticks, stored_bar_end=T + 8 * MINUTE)
    b, publisher, rows = builder(session)
    b.add_bars([(Rec("candles.v1", 7), bar(T + 7 * MINUTE))])  # ends T+8m: a's and b's 5m horizons have passed
    await b.flush()
    assert [(o.signal_id, o.horizon) for o in rows._rows] == [("a", "5m"), ("b", "5m")]
    assert [topic for topic, *_ in publisher.sent] == [OUTCOMES_TOPIC, OUTCOMES_TOPIC]
    assert all(origin.offset == 7 for *_, origin in publisher.sent), "a refused outcome dead-letters the bar's record"
    published = [msgspec.json.decode(value, type=SignalOutcome) for _, _, value, _ in publisher.sent]
    expected = [of(signals[0], [t for t in ticks if T <= t[0] < T + 5 * MINUTE]),
                of(signals[1], [t for t in ticks if T + 2 * MINUTE <= t[0] < T + 7 * MINUTE])]
    assert published == rows._rows == expected
    assert session.queries == ["ranges", "ticks"], "one read of ticks for all the windows, not one per signal"

    b.add_bars([(Rec("candles.v1", 8), bar(T + 8 * MINUTE))])  # up to T+9m: nothing new is due
    rows._clear()
    await b.flush()
    assert rows._rows == []


async def test_after_a_restart_only_the_outcomes_not_stored_are_computed() -> None:
    signals = [signal(id="a", time_ms=T), signal(id="b", time_ms=T + 2 * MINUTE)]
    session = FakeSession(signals, [(T + 1, 1.1, 1.1002)], stored_bar_end=T + 8 * MINUTE, done={"a": [5 * MINUTE]})
    b, _, rows = builder(session)
    b.add_bars([(Rec("candles.v1", 1), bar(T + 7 * MINUTE))])  # a fresh process: first sight of the series
    await b.flush()
    assert [(o.signal_id, o.horizon) for o in rows._rows] == [("b", "5m")]


async def test_a_late_signal_gets_every_horizon_already_passed_and_no_other() -> None:
    late = signal(id="late", time_ms=T)
    session = FakeSession([late], [(T + 5, 1.1, 1.1002), (T + 3_000_000, 1.2, 1.2002)], stored_bar_end=T + 61 * MINUTE)
    b, publisher, rows = builder(session, "5m,1h,1d")
    stored = Signal(v=1, id="late", tenant="acme", broker="demo", strategy="meanrev", symbol="EURUSD", time_msc=T,
                    action="buy", confidence=0.5, price=1.1, sl=1.095, tp=1.105)
    agents.outcomes.enriched_signals([(Rec("signals.enriched.v1", 3), EnrichedSignal(v=1, signal=stored, market=None,
                                                                                     similar=[], enriched_at_ms=T))],
                                     agents.outcomes.OutcomesSinks(b, rows))
    await b.flush()
    assert [o.horizon for o in rows._rows] == ["5m", "1h"], "1d has not passed"
    assert all(origin.topic == "signals.enriched.v1" for *_, origin in publisher.sent)
    assert rows._rows[1].exit_mid == (1.2 + 1.2002) / 2 and rows._rows[0].ticks == 1


def test_the_handlers_skip_a_role_this_run_does_not_write() -> None:
    sinks = agents.outcomes.OutcomesSinks(None, None)
    agents.outcomes.bars([(Rec("candles.v1", 1), bar(T))], sinks)  # type: ignore[list-item]
    assert sinks.ordered == [] and sinks.after_publish == []


@pytest.mark.parametrize("colliding", [False, True])
async def test_windows_of_series_whose_names_share_a_hash_are_read_one_series_at_a_time(colliding: bool) -> None:
    ticks = [(T + i * 1_000, 1.1 + (i % 7) * 1e-3, 1.1002 + (i % 7) * 1e-3) for i in range(0, 400)]
    session = FakeSession([], ticks, stored_bar_end=0)
    session.colliding = colliding
    b, _, _ = builder(session)
    mine, other = signal(id="a", time_ms=T + 10_000), signal(id="b", symbol="OTHER", time_ms=T + 20_000)
    found = await b.stats([(mine, FIVE), (other, FIVE)])
    assert session.queries == ["ticks"] * (2 if colliding else 1)
    assert found == {("acme", "a", FIVE.ms): window_stats(mine, [t for t in ticks if T + 10_000 <= t[0] < T + 10_000 + FIVE.ms])}


def test_window_stats_of_nothing_is_no_ticks() -> None:
    assert window_stats(signal(), []) == NO_TICKS == WindowStats()


@settings(max_examples=300, deadline=None)
@given(action=st.sampled_from(["buy", "sell", "close", "hold"]), raw=tick_lists, bounds=st.tuples(st.integers(-10, 310_000),
       st.integers(0, 320_000)), levels=st.tuples(st.one_of(st.none(), prices), st.one_of(st.none(), prices)))
def test_the_array_computation_of_a_window_is_the_reference_one(action: str, raw: list[tuple[int, float, float]],
                                                                bounds: tuple[int, int],
                                                                levels: tuple[float | None, float | None]) -> None:
    ticks = sorted(((T + ms, bid, bid + spread) for ms, bid, spread in raw), key=lambda t: t[0])  # stable: same-ms order
    s = signal(action, tp=levels[0], sl=levels[1])
    start, end = T + min(bounds), T + max(bounds)
    inside = [t for t in ticks if start <= t[0] < end]
    columns = ([t[0] for t in ticks], [t[1] for t in ticks], [t[2] for t in ticks])
    arrays = SeriesTicks(np.array(columns[0], dtype=np.int64), np.array(columns[1]), np.array(columns[2]))
    assert arrays.window(s, start, end) == window_stats(s, inside)

