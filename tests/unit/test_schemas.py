"""The msgspec decoders are exactly as strict as the published JSON Schemas."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.contracts.schemas import SCHEMA_TYPES, Signal, Tick
from pipeline.core.codec import BatchDecoder

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"

VALID = {
    "tick.v1": {"v": 1, "tenant": "acme", "broker": "demo", "symbol": "EURUSD", "time_msc": 1763900000123,
                "bid": 1.08123, "ask": 1.08131, "last": 0.0, "volume": 0, "volume_real": 0.0, "flags": 6},
    "signal.v1": {"v": 1, "id": "s-1", "tenant": "acme", "broker": "demo", "strategy": "meanrev", "symbol": "XAUUSD",
                  "time_msc": 1763900000123, "action": "buy", "confidence": 0.7, "price": 2650.1, "sl": 2640.0,
                  "tp": 2670.0, "reason": "z-score < -2"},
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


@pytest.mark.parametrize("name", ["tick.v1", "signal.v1"])
def test_valid_examples_pass_both(name):
    document = VALID[name]
    assert validator(name).is_valid(document)
    assert msgspec_accepts(name, json.dumps(document).encode())


@pytest.mark.parametrize("name", ["tick.v1", "signal.v1"])
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
