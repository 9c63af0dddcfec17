"""The simulator: a deterministic, schema-valid, MT5-like market, and its paced run."""

from __future__ import annotations

import math
import statistics
import time
from collections import defaultdict

import msgspec
import pytest
from click.testing import CliRunner

from pipeline.cli.produce import simulate
from pipeline.contracts.schemas import (
    TICK_FLAG_ASK,
    TICK_FLAG_BID,
    TICK_FLAG_BUY,
    TICK_FLAG_LAST,
    TICK_FLAG_SELL,
    TICK_FLAG_VOLUME,
    Signal,
    Tick,
)
from pipeline.contracts.topics import SIGNALS_TOPIC, TICKS_TOPIC
from pipeline.ingest.producer import MT5Producer, encode_signal, encode_tick
from pipeline.ingest.simulator import (
    DEFAULT_SPEC,
    SYMBOLS,
    Market,
    SimulationConfig,
    SimulationProgress,
    due,
    generate_ticks,
    run_simulation,
    spec_of,
)
from tests.topic_reader import read_topic

START_MS = 1_763_900_000_000
ALL_SYMBOLS = [*SYMBOLS, "MYINDEX"]


def by_key(ticks: list[dict]) -> dict[tuple[str, str, str], list[dict]]:
    keyed: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for tick in ticks:
        keyed[(tick["tenant"], tick["broker"], tick["symbol"])].append(tick)
    return keyed


@pytest.fixture(scope="module")
def market_ticks() -> list[dict]:
    config = SimulationConfig(tenants=["acme", "globex"], brokers=["demo", "live-1"], symbols=ALL_SYMBOLS)
    return generate_ticks(config, 60_000, START_MS)


def test_same_seed_same_market():
    config = SimulationConfig(seed=11)
    assert generate_ticks(config, 5000, START_MS) == generate_ticks(SimulationConfig(seed=11), 5000, START_MS)
    assert generate_ticks(config, 5000, START_MS) != generate_ticks(SimulationConfig(seed=12), 5000, START_MS)
    first, second = Market(config, START_MS), Market(config, START_MS)
    assert [first.signal(START_MS) for _ in range(50)] == [second.signal(START_MS) for _ in range(50)]


def test_signals_do_not_change_the_tick_sequence():
    config = SimulationConfig()
    plain, interleaved = Market(config, START_MS), Market(config, START_MS)
    ticks = [plain.tick(START_MS + i) for i in range(2000)]
    mixed = []
    for i in range(2000):
        if i % 7 == 0:
            interleaved.signal(START_MS + i)
        mixed.append(interleaved.tick(START_MS + i))
    assert mixed == ticks


def test_every_tick_is_valid_against_the_schema(market_ticks):
    decoder = msgspec.json.Decoder(Tick)
    for tick in market_ticks:
        decoder.decode(encode_tick(**tick))


def test_every_signal_is_valid_against_the_schema():
    market = Market(SimulationConfig(symbols=ALL_SYMBOLS), START_MS)
    for i in range(5000):
        market.tick(START_MS + i)
    decoder = msgspec.json.Decoder(Signal)
    signals = [market.signal(START_MS + i) for i in range(2000)]
    for signal in signals:
        decoded = decoder.decode(encode_signal(**signal))
        if decoded.action == "buy":
            assert decoded.sl < decoded.price < decoded.tp
        elif decoded.action == "sell":
            assert decoded.tp < decoded.price < decoded.sl
        else:
            assert decoded.sl is None and decoded.tp is None
    assert len({s["id"] for s in signals}) == len(signals)
    assert {s["action"] for s in signals} == {"buy", "sell", "close", "hold"}


def test_signal_ids_differ_between_runs():
    config = SimulationConfig()
    assert Market(config, START_MS).signal(START_MS)["id"] != Market(config, START_MS + 1).signal(START_MS)["id"]


def test_quotes_are_rounded_with_bid_below_ask(market_ticks):
    for tick in market_ticks:
        digits = spec_of(tick["symbol"]).digits
        assert tick["bid"] < tick["ask"], tick
        assert round(tick["bid"], digits) == tick["bid"] and round(tick["ask"], digits) == tick["ask"], tick


def test_time_is_strictly_increasing_per_key_even_above_1000_ticks_per_key_per_second():
    config = SimulationConfig(tenants=["acme"], symbols=["EURUSD", "XAUUSD"], rate=100_000)
    ticks = generate_ticks(config, 20_000, START_MS)
    for key, series in by_key(ticks).items():
        times = [t["time_msc"] for t in series]
        assert all(a < b for a, b in zip(times, times[1:])), key
    assert ticks[0]["time_msc"] == START_MS


@pytest.mark.parametrize("symbol", ALL_SYMBOLS)
def test_price_scale_per_symbol(market_ticks, symbol):
    spec = SYMBOLS.get(symbol, DEFAULT_SPEC)
    mids = [(t["bid"] + t["ask"]) / 2 for t in market_ticks if t["symbol"] == symbol]
    spreads = [t["ask"] - t["bid"] for t in market_ticks if t["symbol"] == symbol]
    assert len(mids) > 1000
    assert all(abs(mid / spec.price - 1) < 0.05 for mid in mids)
    assert 0.5 * spec.spread < statistics.mean(spreads) < 2 * spec.spread


def test_known_scales():
    assert (SYMBOLS["EURUSD"].digits, SYMBOLS["USDJPY"].digits, SYMBOLS["XAUUSD"].digits) == (5, 3, 2)
    assert 1.0 < SYMBOLS["EURUSD"].price < 1.2 and 2000 < SYMBOLS["XAUUSD"].price < 3500
    assert spec_of("NOT-IN-TABLE") == DEFAULT_SPEC


def test_flags_say_what_changed(market_ticks):
    for key, series in by_key(market_ticks).items():
        previous = {"bid": 0.0, "ask": 0.0}
        for tick in series:
            flags = tick["flags"]
            assert bool(flags & TICK_FLAG_BID) == (tick["bid"] != previous["bid"]), tick
            assert bool(flags & TICK_FLAG_ASK) == (tick["ask"] != previous["ask"]), tick
            assert flags, tick
            previous = tick
    deals = [t for t in market_ticks if t["flags"] & TICK_FLAG_LAST]
    assert deals and {t["symbol"] for t in deals} == {s for s, spec in SYMBOLS.items() if spec.exchange}
    for deal in deals:
        assert deal["flags"] & TICK_FLAG_VOLUME and deal["volume"] >= 1
        side = deal["flags"] & (TICK_FLAG_BUY | TICK_FLAG_SELL)
        assert deal["last"] == (deal["ask"] if side == TICK_FLAG_BUY else deal["bid"])
    assert all(t["last"] == 0 and t["volume"] == 0 for t in market_ticks if not spec_of(t["symbol"]).exchange)


def test_symbols_of_a_factor_group_are_correlated():
    config = SimulationConfig(tenants=["acme"], symbols=["EURUSD", "GBPUSD", "USDJPY", "BTCUSD"])
    mids: dict[str, float] = {}
    samples = []
    for i, tick in enumerate(generate_ticks(config, 200_000, START_MS)):
        mids[tick["symbol"]] = (tick["bid"] + tick["ask"]) / 2
        if i % 1000 == 999:
            samples.append(dict(mids))

    def correlation(a: str, b: str) -> float:
        ra = [math.log(y[a] / x[a]) for x, y in zip(samples, samples[1:])]
        rb = [math.log(y[b] / x[b]) for x, y in zip(samples, samples[1:])]
        return statistics.correlation(ra, rb)

    assert correlation("EURUSD", "GBPUSD") > 0.3
    assert correlation("EURUSD", "USDJPY") < -0.3
    assert abs(correlation("EURUSD", "BTCUSD")) < 0.3


def test_pacing_math():
    assert due(0.0, 5000, 150_000) == 0
    assert due(-1.0, 5000, 150_000) == 0
    assert due(0.015, 5000, 150_000) == 75
    assert due(10.0, 5000, 150_000) == 50_000
    assert due(31.0, 5000, 150_000) == 150_000
    config = SimulationConfig(rate=5000, duration_s=30, signal_rate=2)
    assert (config.total_ticks, config.total_signals) == (150_000, 60)
    assert config.ticks_per_key_per_s == 5000 / 16


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"rate": 0}, "rate must be > 0"),
        ({"duration_s": -1}, "duration_s must be > 0"),
        ({"rate": math.inf}, "rate must be a finite number"),
        ({"signal_rate": -0.5}, "signal_rate must be >= 0"),
        ({"tenants": ["Acme"]}, "tenants: 'Acme'"),
        ({"brokers": []}, "brokers: at least one"),
        ({"symbols": ["EURUSD", "EURUSD"]}, "symbols: duplicates"),
        ({"symbols": ["EUR USD"]}, "symbols: 'EUR USD'"),
        ({"seed": 1.5}, "seed must be an integer"),
    ],
)
def test_invalid_config_is_a_clear_error(fields, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        SimulationConfig(**fields)


@pytest.mark.stack
async def test_run_simulation_paces_live_ticks_through_the_producer(broker_settings, tenant):
    config = SimulationConfig(tenants=[tenant], rate=4000, duration_s=0.6, signal_rate=10)
    progress: list[SimulationProgress] = []
    started_ms = time.time_ns() // 1_000_000
    async with MT5Producer(broker_settings) as producer:
        report = await run_simulation(producer, config, progress.append)
    ended_ms = time.time_ns() // 1_000_000

    assert (report.ticks, report.signals) == (2400, 6)
    assert 0.55 <= report.seconds < 1.5 and report.rate == report.ticks / report.seconds
    prefix = f"{tenant}:".encode()
    ticks = await read_topic(broker_settings, TICKS_TOPIC, prefix, 2400)
    signals = await read_topic(broker_settings, SIGNALS_TOPIC, prefix, 6)
    assert (len(ticks), len(signals)) == (2400, 6)
    decoded = [msgspec.json.decode(value, type=Tick) for _, value in ticks]
    assert all(key == tick.key.encode() for (key, _), tick in zip(ticks, decoded))
    assert all(started_ms <= tick.time_msc <= ended_ms for tick in decoded)
    first_half = sum(1 for tick in decoded if tick.time_msc < started_ms + 300)
    assert 0.3 * 2400 < first_half < 0.7 * 2400, "ticks were not spread over the duration"
    assert len(progress) >= 2 and progress[-1].ticks == 2400 and progress[-1].target_ticks == 2400


def test_cli_rejects_bad_options_without_a_traceback():
    result = CliRunner().invoke(simulate, ["--rate", "0"])
    assert result.exit_code == 2
    assert "rate must be > 0" in result.output and "Traceback" not in result.output


@pytest.mark.stack
async def test_simulation_reaches_the_broker(broker_settings, tenant):
    config = SimulationConfig(tenants=[tenant], brokers=["demo"], symbols=["EURUSD", "XAUUSD", "AAPL"],
                              rate=3000, duration_s=1.0, signal_rate=20)
    async with MT5Producer(broker_settings) as producer:
        report = await run_simulation(producer, config)
    assert (report.ticks, report.signals) == (3000, 20)

    prefix = f"{tenant}:".encode()
    ticks = await read_topic(broker_settings, TICKS_TOPIC, prefix, report.ticks)
    signals = await read_topic(broker_settings, SIGNALS_TOPIC, prefix, report.signals)
    assert (len(ticks), len(signals)) == (report.ticks, report.signals)
    for key, value in ticks:
        tick = msgspec.json.decode(value, type=Tick)
        assert key == f"{tick.tenant}:{tick.broker}:{tick.symbol}".encode()
    assert {key for key, _ in ticks} == {f"{tenant}:demo:{s}".encode() for s in config.symbols}
    for key, value in signals:
        signal = msgspec.json.decode(value, type=Signal)
        assert key == f"{signal.tenant}:{signal.broker}:{signal.symbol}".encode()
