"""The msgspec decoders are exactly as strict as the published JSON Schemas."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import jsonschema
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.contracts.schemas import CANDLE_SCHEMAS, SCHEMA_TYPES, Candle, Signal, Tick
from pipeline.core.codec import BatchDecoder

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"

VALID = {
    "tick.v1": {"v": 1, "tenant": "acme", "broker": "demo", "symbol": "EURUSD", "time_msc": 1763900000123,
                "bid": 1.08123, "ask": 1.08131, "last": 0.0, "volume": 0, "volume_real": 0.0, "flags": 6},
    "signal.v1": {"v": 1, "id": "s-1", "tenant": "acme", "broker": "demo", "strategy": "meanrev", "symbol": "XAUUSD",
                  "time_msc": 1763900000123, "action": "buy", "confidence": 0.7, "price": 2650.1, "sl": 2640.0,
                  "tp": 2670.0, "reason": "z-score < -2"},
    "signal.outcome.v1": {"v": 1, "tenant": "acme", "broker": "demo", "symbol": "XAUUSD", "strategy": "meanrev",
                          "signal_id": "s-1", "action": "buy", "signal_time_msc": 1763900000123, "horizon": "5m",
                          "horizon_ms": 300000, "horizon_end_msc": 1763900300123, "entry": 2650.1, "entry_source": "price",
                          "tp": 2670.0, "sl": 2640.0, "exit_mid": 2655.3, "exit_time_msc": 1763900299001,
                          "move": 0.00196, "directed_return": 0.00196, "tp_hit_msc": None, "sl_hit_msc": 1763900100000,
                          "first_hit": "sl", "first_hit_msc": 1763900100000, "mae": 0.0041, "ticks": 318},
}

odd_strings = st.sampled_from(["", "acme", "ACME", "a:b", "EURUSD\n", "x" * 65, "x" * 2000, "#AAPL", "US30+", "é", " a"])
numbers = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, 1.0, 0.5, 255, 256, 4102444800000, 4102444800001, 9007199254740991, 9007199254740993, 1e9, 1e15, -0.0]),
)
values = st.one_of(numbers, odd_strings, st.booleans(), st.none(), st.lists(st.integers(), max_size=2),
                   st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                   st.sampled_from(["buy", "sell", "close", "hold", "BUY"]))


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def msgspec_accepts(name: str, document: bytes) -> bool:
    try:
        msgspec.json.decode(document, type=SCHEMA_TYPES[name])
        return True
    except msgspec.ValidationError:
        return False


@pytest.mark.parametrize("name", ["tick.v1", "signal.v1", "signal.outcome.v1"])
def test_valid_examples_pass_both(name):
    document = VALID[name]
    assert validator(name).is_valid(document)
    assert msgspec_accepts(name, json.dumps(document).encode())


@pytest.mark.parametrize("name", ["tick.v1", "signal.v1", "signal.outcome.v1"])
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_decoder_agrees_with_json_schema(name, data):
    document = dict(VALID[name])
    for field in data.draw(st.lists(st.sampled_from([*document, "extra"]), max_size=3, unique=True)):
        action = data.draw(st.sampled_from(["replace", "delete"]))
        if action == "delete":
            document.pop(field, None)
        else:
            document[field] = data.draw(values)
    expected = validator(name).is_valid(document)
    assert msgspec_accepts(name, json.dumps(document).encode()) == expected, document


def test_dlq_schema_matches_its_struct():
    letter = {"v": 1, "reason": "oversize", "error": "too big", "topic": "mt5.ticks.v1", "partition": 0, "offset": 5,
              "timestamp_ms": None, "key_b64": None, "value_b64": "eA==", "failed_at_ms": 1}
    assert validator("dlq.v1").is_valid(letter)
    assert msgspec.json.decode(json.dumps(letter).encode(), type=SCHEMA_TYPES["dlq.v1"]).value_b64 == "eA=="


class _Record:
    """A consumed record keyed as the valid tick's series (``tenant:broker:symbol``)."""

    def __init__(self, value: bytes | None, offset: int = 0, key: bytes = b"acme:demo:EURUSD") -> None:
        self.topic, self.partition, self.offset, self.timestamp, self.key, self.value = "t", 0, offset, 0, key, value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{not json", "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b'{"v":1,"tenant":"a","broker":"b","symbol":"S","time_msc":1,"bid":NaN,"ask":1}', "malformed_json"),
        (json.dumps({**VALID["tick.v1"], "v": 2}).encode(), "unknown_version"),
        (json.dumps({**VALID["tick.v1"], "bid": -1}).encode(), "schema_violation"),
        (json.dumps({**VALID["tick.v1"], "bid": 1e999}).encode().replace(b"Infinity", b"1e999"), "schema_violation"),
        (json.dumps({**VALID["tick.v1"], "time_msc": 5e15}).encode(), "schema_violation"),
        (b"x" * 70_000, "oversize"),
        (None, "schema_violation"),
    ],
)
def test_batch_decoder_classifies_every_reject(value, reason):
    decoded = BatchDecoder(Tick, max_record_bytes=65_536).decode([_Record(value)])
    assert not decoded.valid
    assert [r.reason for r in decoded.rejected] == [reason]
    assert decoded.rejected[0].error


def test_batch_decoder_keeps_order_and_splits():
    good = json.dumps(VALID["tick.v1"]).encode()
    records = [_Record(good, 0), _Record(b"[]", 1), _Record(good, 2)]
    decoded = BatchDecoder(Tick, max_record_bytes=65_536).decode(records)
    assert [r.offset for r, _ in decoded.valid] == [0, 2]
    assert [r.record.offset for r in decoded.rejected] == [1]
    assert decoded.valid[0][1].key == "acme:demo:EURUSD"


def test_signal_optional_fields_default_to_none():
    minimal = {k: v for k, v in VALID["signal.v1"].items() if k not in ("price", "sl", "tp", "reason")}
    signal = msgspec.json.decode(json.dumps(minimal).encode(), type=Signal)
    assert signal.price is None and signal.reason is None


# --- bars: candle.v1 (no indicators) and candle.v2 (with them), one struct decoding both -------------------------

CANDLE_V1 = {"v": 1, "tenant": "acme", "broker": "demo", "symbol": "EURUSD", "timeframe": "1m", "start_ms": 1763899200000,
             "end_ms": 1763899260000, "open": 1.1, "high": 1.2, "low": 1.0, "close": 1.15, "bid_close": 1.149,
             "ask_close": 1.151, "spread_avg": 0.002, "spread_min": 0.001, "spread_max": 0.003, "ticks": 12, "volume": 0,
             "volume_real": 0.0}
CANDLE_V2 = {**CANDLE_V1, "v": 2, "indicators": {"sma_20": 1.12, "rsi_14": 55.5, "macd_hist": -1e-5, "vwap": 1.13}}
indicator_maps = st.one_of(
    st.dictionaries(st.sampled_from(["sma_20", "ema_50", "macd", "vwap", "x9_", "Sma", "", "sma 20", "sma\n", "a" * 64,
                                     "a" * 65, "1abc"]), numbers, max_size=3),
    st.dictionaries(st.text(max_size=4), st.one_of(numbers, st.none(), st.text(max_size=2)), max_size=2),
    st.sampled_from([{}, {"sma_20": 1e308}, {"sma_20": -1.7976931348623157e308}, {"rsi_14": True}]),
)


@functools.cache
def candle_validators() -> tuple[jsonschema.Draft202012Validator, ...]:
    return tuple(validator(name) for name in CANDLE_SCHEMAS)


def accepted_by_a_candle_schema(document: dict) -> bool:
    return any(v.is_valid(document) for v in candle_validators())


def test_valid_bars_of_both_versions_pass_their_schema_and_decode() -> None:
    assert validator("candle.v1").is_valid(CANDLE_V1) and not validator("candle.v2").is_valid(CANDLE_V1)
    assert validator("candle.v2").is_valid(CANDLE_V2) and not validator("candle.v1").is_valid(CANDLE_V2)
    old = msgspec.json.decode(json.dumps(CANDLE_V1).encode(), type=Candle)
    new = msgspec.json.decode(json.dumps(CANDLE_V2).encode(), type=Candle)
    assert (old.v, old.indicators, old.indicator_values) == (1, msgspec.UNSET, {})
    assert (new.v, new.indicator_values) == (2, CANDLE_V2["indicators"])
    assert int(new.start_ms) == CANDLE_V2["start_ms"] and int(new.ticks) == 12
    assert SCHEMA_TYPES["candle.v1"] is SCHEMA_TYPES["candle.v2"] is Candle and CANDLE_SCHEMAS[-1] == "candle.v2"


@pytest.mark.parametrize("base", [CANDLE_V1, CANDLE_V2])
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_candle_decoder_accepts_exactly_what_candle_v1_or_v2_accepts(base: dict, data: st.DataObject) -> None:
    document = json.loads(json.dumps(base))
    for field in data.draw(st.lists(st.sampled_from([*CANDLE_V2, "extra"]), max_size=3, unique=True)):
        action = data.draw(st.sampled_from(["replace", "delete", "indicators"]))
        if action == "delete":
            document.pop(field, None)
        elif action == "indicators" or field == "indicators":
            document["indicators"] = data.draw(indicator_maps)
        else:
            document[field] = data.draw(st.one_of(values, st.sampled_from([1, 2, 3, 1.0, 2.0, 0])))
    assert msgspec_accepts("candle.v2", json.dumps(document).encode()) == accepted_by_a_candle_schema(document), document


def test_what_the_ingest_stage_publishes_is_a_valid_candle_v2() -> None:
    bar = Candle(**{**CANDLE_V1, "v": 2, "indicators": {"ema_20": 1.1, "atr_14": 0.0003}})
    encoded = json.loads(msgspec.json.encode(bar))
    assert validator("candle.v2").is_valid(encoded) and encoded["v"] == 2 and isinstance(encoded["start_ms"], int)
    assert json.loads(msgspec.json.encode(Candle(**CANDLE_V1))) == CANDLE_V1, "a v1 bar encodes without indicators"


@pytest.mark.parametrize(("document", "reason"), [
    ({**CANDLE_V1, "indicators": {}}, "schema_violation"),          # v1 has no indicators
    ({k: v for k, v in CANDLE_V2.items() if k != "indicators"}, "schema_violation"),  # v2 needs them
    ({**CANDLE_V2, "indicators": {"sma_20": None}}, "schema_violation"),
    ({**CANDLE_V2, "v": 3}, "unknown_version"),
])
def test_the_candles_topic_decoder_dead_letters_what_neither_version_accepts(document: dict, reason: str) -> None:
    record = _Record(json.dumps(document).encode(), key=b"acme:demo:EURUSD")
    decoded = BatchDecoder(Candle, max_record_bytes=65_536).decode([record])
    assert [r.reason for r in decoded.rejected] == [reason]
    both = [_Record(json.dumps(CANDLE_V1).encode(), 0), _Record(json.dumps(CANDLE_V2).encode(), 1)]
    assert [m.v for _, m in BatchDecoder(Candle, max_record_bytes=65_536).decode(both).valid] == [1, 2]
