"""The API's pieces without a stack: parameter parsing, pages and cursors, key format and hashing,
the key cache and its TTL, and the OpenAPI document built from the routes."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson
import pytest
from multidict import MultiDict

from pipeline.api.app import all_routes, document_bytes
from pipeline.api.auth import Authenticator, Principal
from pipeline.api.errors import ApiError
from pipeline.api.keys import hash_secret, split_key
from pipeline.api.pages import DepthHints, Page, Position, page_params
from pipeline.api.params import Integer, Number, parse_query, symbol_param
from pipeline.config import load_settings

PARAMS = (symbol_param(), Integer("limit", "", 1, 1000, default=100), Number("w", "", 0.0, 1.0, default=0.5))


def parse(**query: str | list[str]) -> dict[str, Any]:
    pairs = [(k, v) for k, values in query.items() for v in (values if isinstance(values, list) else [values])]
    return parse_query(MultiDict(pairs), PARAMS)


def refused(**query: str | list[str]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse(**query)
    assert caught.value.status == 400
    return caught.value


def test_query_parameters_are_parsed_strictly_with_defaults() -> None:
    assert parse(symbol="EURUSD") == {"symbol": "EURUSD", "limit": 100, "w": 0.5}
    assert parse(symbol="US500.cash", limit="7", w="1e-3") == {"symbol": "US500.cash", "limit": 7, "w": 0.001}
    assert parse(symbol="X", w="-0.0")["w"] == 0.0
    for bad in ("1.0", " 7", "7 ", "+7", "1_0", "0x10", "", "0", "1001", "١٢"):
        assert refused(symbol="X", limit=bad).parameter == "limit", bad
    for bad in ("nan", "inf", "-inf", "Infinity", "1.5", "-0.1", ".5", "5.", "1e", "0,5"):
        assert refused(symbol="X", w=bad).parameter == "w", bad
    for bad in ("", "EUR USD", "EURUSD\n", "A:B", "x" * 33, "-EUR"):
        assert refused(symbol=bad).parameter == "symbol", bad
    assert refused().parameter == "symbol"
    assert refused(symbol=["A", "B"]).message == "symbol: given more than once"
    assert refused(symbol="A", extra="1").parameter == "extra"
    tenant = refused(symbol="A", tenant="other")
    assert tenant.parameter == "tenant" and "API key" in tenant.message


def test_page_cursor_continues_after_the_rows_of_the_last_millisecond() -> None:
    params = {p.name: p.default for p in page_params("ticks")}
    page = Page.of({**params, "limit": 4})
    assert page.next_cursor([9, 8, 8, 8]) == "8-3"
    assert page.next_cursor([9, 8, 7]) is None, "a short page is the last"
    following = Page.of({**params, "limit": 4, "cursor": Position(8, 3)})
    assert following.next_cursor([8, 8, 8, 8]) == "8-7", "skips accumulate within one millisecond"
    assert following.next_cursor([8, 7, 6, 5]) == "5-1"
    assert following.conditions("time") == ["time <= fromUnixTimestamp64Milli({page_at:Int64})"]
    assert following.parameters() == {"page_limit": 4, "page_skip": 3, "page_at": 8}
    cursor = page_params("ticks")[3]
    assert cursor.parse("1763899200123-12") == Position(1763899200123, 12)
    for bad in ("", "1-", "-1", "a-1", "1-1-1", "12345678901234-0", "1-1234567890"):
        with pytest.raises(ApiError):
            cursor.parse(bad)


def test_depth_hints_bound_only_pages_no_deeper_than_seen() -> None:
    hints = DepthHints(max_shapes=2)
    assert hints.bound("a", 10) is None
    hints.remember("a", 100, 5_000)
    assert hints.bound("a", 100) == 5_000 and hints.bound("a", 10) == 5_000
    assert hints.bound("a", 101) is None
    hints.remember("b", 1, 1)
    hints.remember("c", 1, 1)
    assert hints.bound("a", 1) is None, "the oldest shape is forgotten"


def test_key_format_and_salted_hash() -> None:
    key = "tw_0123456789abcdef_" + "A" * 43
    assert split_key(key) == ("0123456789abcdef", "A" * 43)
    for bad in (key + "A", key[:-1], key.replace("tw_", "TW_"), key.replace("0123", "ABCD"), key + "\n", ""):
        assert split_key(bad) is None, bad
    assert hash_secret(b"salt-1", "s") != hash_secret(b"salt-2", "s")
    assert len(hash_secret(b"salt", "s")) == 32


class FakePool:
    """Answers ``load_key``'s query from a dict, counting the database round trips."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.fetches = 0

    def add(self, key_id: str, secret: str, *, tenant: str = "acme", scope: str = "read", revoked: bool = False) -> str:
        salt = b"0123456789abcdef"
        self.rows[key_id] = {"key_id": key_id, "tenant": tenant, "scope": scope, "salt": salt,
                             "secret_hash": hash_secret(salt, secret), "revoked": revoked}
        return f"tw_{key_id}_{secret}"

    async def fetchrow(self, sql: str, key_id: str) -> dict[str, Any] | None:
        self.fetches += 1
        return self.rows.get(key_id)


def test_authenticator_caches_key_records_for_the_ttl_and_then_sees_revocation() -> None:
    pool, now = FakePool(), [0.0]
    auth = Authenticator(pool, ttl_s=5.0, clock=lambda: now[0])  # type: ignore[arg-type]
    key = pool.add("00000000000000aa", "s" * 43, scope="admin")

    def authenticate(header: str | None) -> Principal:
        return asyncio.run(auth.authenticate(header))

    assert authenticate(f"Bearer {key}") == Principal("acme", "admin", "00000000000000aa")
    authenticate(f"Bearer {key}")
    assert pool.fetches == 1, "the second check is served from the cache"
    with pytest.raises(ApiError) as wrong:
        authenticate(f"Bearer {key[:-1]}x")
    assert wrong.value.status == 401 and pool.fetches == 1, "a wrong secret is checked against the cached hash"

    pool.rows["00000000000000aa"]["revoked"] = True
    now[0] = 4.9
    assert authenticate(f"Bearer {key}").tenant == "acme", "within the TTL the cached record stands"
    now[0] = 5.1
    with pytest.raises(ApiError) as revoked:
        authenticate(f"Bearer {key}")
    assert revoked.value.status == 401 and pool.fetches == 2

    other = pool.add("00000000000000bb", "t" * 43)
    authenticate(f"Bearer {other}")
    pool.rows["00000000000000bb"]["revoked"] = True
    auth.forget("00000000000000bb")
    with pytest.raises(ApiError):
        authenticate(f"Bearer {other}")
    for header in (None, "", "Bearer", "Token x", "Bearer tw_short"):
        with pytest.raises(ApiError) as malformed:
            authenticate(header)
        assert malformed.value.status == 401
    assert Principal("acme", "admin", "x").allows("read") and not Principal("acme", "read", "x").allows("admin")


def test_the_document_describes_every_route_and_parameter() -> None:
    settings = load_settings(candle_timeframes="1m,1h", correlation_threshold=0.7, similar_patterns_k=9)
    document = orjson.loads(document_bytes(settings))
    for route in all_routes(settings):
        operation = document["paths"][route.path][route.method.lower()]
        assert [p["name"] for p in operation.get("parameters", [])] == [p.name for p in route.params]
        assert set(re.findall(r"{(\w+)}", route.path)) == {p.name for p in route.params if p.location == "path"}
        assert ("security" in operation) == (route.scope is not None)
        if route.scope is not None:
            assert {"401", "503"} <= set(operation["responses"])
        if route.params or route.body:
            assert "400" in operation["responses"]
    candles = document["paths"]["/v1/candles"]["get"]["parameters"]
    assert next(p for p in candles if p["name"] == "timeframe")["schema"]["enum"] == ["1m", "1h"]
    similar = document["paths"]["/v1/patterns/similar"]["get"]["parameters"]
    assert next(p for p in similar if p["name"] == "k")["schema"]["default"] == 9
    neighbors = document["paths"]["/v1/graph/neighbors"]["get"]["parameters"]
    assert next(p for p in neighbors if p["name"] == "min_weight")["schema"]["default"] == 0.7
    ticks = document["paths"]["/v1/ticks"]["get"]["parameters"]
    symbol_pattern = next(p for p in ticks if p["name"] == "symbol")["schema"]["pattern"]
    assert symbol_pattern.startswith("^") and symbol_pattern.endswith("$") and "(?!" not in symbol_pattern, \
        "an ECMA-262 pattern: no Python-only lookahead"
    refs = set(re.findall(r'"#/components/schemas/(\w+)"', document_bytes(settings).decode()))
    assert refs <= set(document["components"]["schemas"])
