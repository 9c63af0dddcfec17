"""Decoding and domain checks: every record becomes exactly one valid message or one reject with its reason."""

from __future__ import annotations

import json
from dataclasses import dataclass

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contracts.schemas import Candle, Signal, Tick
from pipeline.core.codec import BatchDecoder
from pipeline.core.domain import DomainRules, duplicate_key, repeated_key

NOW = 1_763_900_000_000
KEY = b"acme:demo:EURUSD"


@dataclass
class Record:
    value: bytes | None
    key: bytes | None = KEY
    topic: str = "mt5.ticks.v1"
    partition: int = 0
    offset: int = 0
    timestamp: int = 0


def tick(**fields: object) -> bytes:
    body = {"v": 1, "tenant": "acme", "broker": "demo", "symbol": "EURUSD", "time_msc": NOW - 1000, "bid": 1.1,
            "ask": 1.2, "last": 0.0, "volume": 0, "volume_real": 0.0, "flags": 6}
    body.update(fields)
    return orjson.dumps(body)


def decode(value: bytes | None, key: bytes | None = KEY, rules: DomainRules = DomainRules(), message_type=Tick):
    out = BatchDecoder(message_type, 65_536, rules).decode([Record(value, key)], now_ms=NOW)
    assert len(out.valid) + len(out.rejected) == 1
    return out


def reason(value: bytes | None, **kwargs) -> str | None:
    out = decode(value, **kwargs)
    return out.rejected[0].reason if out.rejected else None


@pytest.mark.parametrize(("value", "expected"), [
    (tick(), None),
    (tick().replace(b'"demo"', b'"de\xffmo"'), "malformed_json"),
    (tick().replace(b'"broker"', b'"bro\xfeker"'), "malformed_json"),
    (tick().replace(b'"demo"', b'"de\\ud800mo"'), "malformed_json"),
    (tick().replace(b'"demo"', b'"de\xed\xa0\x80mo"'), "malformed_json"),
    (tick().replace(b'"demo"', b'"de\xc0\xafmo"'), "malformed_json"),
    (tick(bid=5e-324, ask=5e-324), "price_out_of_range"),
    (tick(bid=1e-10), "price_out_of_range"),
    (tick(last=1e-300), "price_out_of_range"),
    (tick(bid=1.3, ask=1.2), "crossed_quote"),
    (tick(time_msc=NOW + 60_001), "future_time"),
    (tick(time_msc=NOW + 60_000), None),
    (tick(tenant="globex"), "key_mismatch"),
    (tick().replace(b'"flags":6', b'"bid":1.15'), "duplicate_key"),
    (tick().replace(b'"flags":6', b'"bi\\u0064":1.15'), "duplicate_key"),
    (b'{"v": 1, "tenant": "acme", "broker": "demo", "symbol": "EURUSD", "time_msc": 1763899999000, '
     b'"bid": 1.1, "ask": 1.2, "ask": 1.3}', "duplicate_key"),
    (None, "schema_violation"),
    (b"", "malformed_json"),
    (tick(v=2), "unknown_version"),
])
def test_each_record_gets_its_reason(value: bytes | None, expected: str | None) -> None:
    assert reason(value) == expected


def test_a_record_without_a_key_or_with_another_key_is_refused() -> None:
    assert reason(tick(), key=None) == "key_mismatch"
    assert reason(tick(), key=b"acme:demo:GBPUSD") == "key_mismatch"
    assert reason(tick(), key=b"\xff\xfe") == "key_mismatch"


def test_crossed_quotes_and_bounds_follow_the_rules() -> None:
    assert reason(tick(bid=1.3, ask=1.2), rules=DomainRules(accept_crossed=True)) is None
    assert reason(tick(bid=1e-10, ask=1e-10), rules=DomainRules(min_price=1e-12)) is None
    assert reason(tick(time_msc=NOW + 3_600_000), rules=DomainRules(max_future_skew_ms=7_200_000)) is None


def test_signals_and_derived_topics_are_checked_too() -> None:
    signal = {"v": 1, "id": "s1", "tenant": "acme", "broker": "demo", "strategy": "x", "symbol": "EURUSD",
              "time_msc": NOW, "action": "buy", "confidence": 0.5, "price": 1.1}
    assert reason(orjson.dumps(signal), message_type=Signal) is None
    assert reason(orjson.dumps({**signal, "sl": 5e-324}), message_type=Signal) == "price_out_of_range"
    assert reason(orjson.dumps({**signal, "time_msc": NOW + 3_600_000}), message_type=Signal) == "future_time"
    assert reason(orjson.dumps(signal).replace(b'"price":1.1', b'"price":1.1,"id":"s2"'), message_type=Signal) == "duplicate_key"
    candle = {"v": 1, "tenant": "acme", "broker": "demo", "symbol": "GBPUSD", "timeframe": "1m", "start_ms": 0, "end_ms": 60000,
              "open": 1, "high": 1, "low": 1, "close": 1, "bid_close": 1, "ask_close": 1, "spread_avg": 0, "spread_min": 0,
              "spread_max": 0, "ticks": 1, "volume": 0, "volume_real": 0}
    assert reason(orjson.dumps(candle), message_type=Candle) == "key_mismatch"


class _Twice(ValueError):
    pass


def _strict_pairs(pairs: list) -> dict:
    if len({k for k, _ in pairs}) != len(pairs):
        raise _Twice()
    return dict(pairs)


def has_duplicate(value: bytes) -> bool:
    try:
        json.loads(value, object_pairs_hook=_strict_pairs)
    except _Twice:
        return True
    return False


FIELDS = ["v", "tenant", "broker", "symbol", "time_msc", "bid", "ask", "last", "volume", "volume_real", "flags"]
VALUES = {"v": "1", "tenant": '"acme"', "broker": '"demo"', "symbol": '"EURUSD"', "time_msc": "1763899999000",
          "bid": "1.1", "ask": "1.2", "last": "0.0", "volume": "0", "volume_real": "0.0", "flags": "6"}


REQUIRED = FIELDS[:7]


@settings(max_examples=400, deadline=None)
@given(names=st.permutations(REQUIRED).flatmap(lambda required: st.lists(st.sampled_from(FIELDS), max_size=7).flatmap(
           lambda extra: st.permutations(list(required) + extra))),
       spaces=st.booleans(), escape=st.booleans())
def test_the_fast_duplicate_check_of_ticks_is_exact(names: list[str], spaces: bool, escape: bool) -> None:
    """Any tick object (every required field, optional ones missing or present, some fields twice, written with
    spaces or escapes): refused as duplicate_key exactly when a key appears twice (oracle: the standard library's
    parser keeping every pair), accepted otherwise."""
    separator = ", " if spaces else ","
    members = []
    for i, name in enumerate(names):
        shown = name if not (escape and i == 0) else "".join(f"\\u{ord(c):04x}" for c in name)
        members.append(f'"{shown}"{": " if spaces else ":"}{VALUES[name]}')
    value = ("{" + separator.join(members) + "}").encode()
    out = decode(value)
    if has_duplicate(value):
        assert out.rejected and out.rejected[0].reason == "duplicate_key"
    else:
        assert out.valid, out.rejected


def test_duplicate_key_names_the_key() -> None:
    assert duplicate_key(b'{"a": 1, "b": {"c": 1, "c": 2}}') == "c"
    assert duplicate_key(b'{"a": 1}') is None


_KEYS = st.sampled_from(["a", "b", "c", ":", "a:", " ", "\u00e9", 'q"'])
_STRINGS = st.text(alphabet=st.sampled_from(list('ab:,{}[] "\\')), max_size=6)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | _STRINGS,
    lambda inner: st.lists(inner, max_size=4) | st.lists(st.tuples(_KEYS, inner), max_size=5),
    max_leaves=12,
)


def _spell(value: object, spaces: bool) -> str:
    """JSON text of ``value``, where a list of (key, value) pairs spells an object that may give a key twice."""
    colon, comma = (" : ", " , ") if spaces else (":", ",")
    if isinstance(value, list) and value and all(isinstance(v, tuple) for v in value):
        return "{" + comma.join(json.dumps(k) + colon + _spell(v, spaces) for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + comma.join(_spell(v, spaces) for v in value) + "]"
    return json.dumps(value)


@settings(max_examples=600, deadline=None)
@given(pairs=st.lists(st.tuples(_KEYS, _JSON), max_size=6), spaces=st.booleans())
def test_the_fast_duplicate_check_of_other_records_is_exact(pairs: list, spaces: bool) -> None:
    """Any JSON object (nested objects and arrays, keys and strings with colons, quotes, braces, escapes, spaces):
    a repeated key is found exactly when some object gives a key twice (oracle: the standard library keeping every
    pair), and it is one of those keys."""
    value = ("{" + (" , " if spaces else ",").join(json.dumps(k) + ":" + _spell(v, spaces) for k, v in pairs) + "}").encode()
    found = repeated_key(value)
    assert (found is not None) == has_duplicate(value), value
    if found is not None:
        assert found == duplicate_key(value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_no_bytes_escape_the_decoder(value: bytes) -> None:
    out = BatchDecoder(Tick, 65_536).decode([Record(value)], now_ms=NOW)
    assert len(out.valid) + len(out.rejected) == 1
