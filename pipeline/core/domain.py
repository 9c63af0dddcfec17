"""Domain checks: what a record must satisfy beyond its JSON Schema before a stage accepts it.

Contract: a check returns ``None`` for a record it accepts, or ``(reason, error)``
naming why not; it never raises for any decoded message. The checks, per message type:

- **every type**: the record key is the body's ``tenant:broker:symbol``
  (``key_mismatch``: a record keyed ``acme:…`` whose body says ``globex`` would
  otherwise be stored as globex, and per-key ordering rests on the key), and no
  JSON object has a key twice (``duplicate_key``: parsers disagree on which one wins);
- **ticks**: ``bid``, ``ask`` (and ``last`` unless 0, "no last price") within
  ``[min_price, max_price]``, which also refuses non-finite and subnormal values
  (``price_out_of_range``); ``bid <= ask`` unless crossed quotes are accepted
  (``crossed_quote``); ``time_msc`` at most ``max_future_skew_ms`` ahead of the wall
  clock (``future_time``: a tick from the future would pin its hot key and bar clock);
- **signals**: ``price``, ``sl``, ``tp`` within the price bounds; ``time_msc`` not in the future.

The duplicate-key check of ticks is exact but avoids a second parse in the common
case: a tick without backslashes has no quote inside a string, so its key count is
its quote count / 2 minus its 3 string values; it has a duplicate exactly when that
count exceeds the number of distinct fields present. Other records (and ticks with
escapes) are parsed again with the standard library, keeping every pair.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable

import msgspec

from pipeline.config import Settings
from pipeline.contracts.schemas import Candle, DlqReason, EnrichedSignal, Signal, Tick

Problem = tuple[DlqReason, str]
#: ``check(key, value, message, now_ms)``: why the record is refused, or None.
Check = Callable[[bytes | None, bytes, Any, int], Problem | None]

_TICK_REQUIRED = 7  # v, tenant, broker, symbol, time_msc, bid, ask
_TICK_OPTIONAL_QUOTED = (b'"last"', b'"volume"', b'"volume_real"', b'"flags"')
_TICK_OPTIONAL_NAMES = frozenset(("last", "volume", "volume_real", "flags"))
_TICK_STRINGS = 3  # tenant, broker, symbol
_MAX_CACHED_KEYS = 100_000


@dataclass(frozen=True)
class DomainRules:
    """The configurable bounds (settings ``TICKWIRE_MIN_PRICE``, ``MAX_PRICE``, ``CROSSED_QUOTES``, ``MAX_FUTURE_SKEW_MS``)."""

    min_price: float = 1e-9
    max_price: float = 1e9
    accept_crossed: bool = False
    max_future_skew_ms: int = 60_000

    @classmethod
    def from_settings(cls, settings: Settings) -> DomainRules:
        return cls(settings.min_price, settings.max_price, settings.crossed_quotes == "accept", settings.max_future_skew_ms)


class _KeyParts:
    """Record keys already seen, split into (tenant, broker, symbol); bounded."""

    def __init__(self) -> None:
        self._parts: dict[bytes, tuple[str, ...]] = {}

    def of(self, key: bytes) -> tuple[str, ...]:
        parts = self._parts.get(key)
        if parts is None:
            try:
                parts = tuple(key.decode("utf-8").split(":"))
            except UnicodeDecodeError:
                parts = ()
            if len(self._parts) >= _MAX_CACHED_KEYS:
                self._parts.clear()
            self._parts[key] = parts
        return parts

    def mismatch(self, key: bytes | None, tenant: str, broker: str, symbol: str) -> Problem | None:
        if key is None:
            return "key_mismatch", "the record has no key; expected tenant:broker:symbol of its body"
        if self.of(key) != (tenant, broker, symbol):
            shown = key[:80].decode("utf-8", "backslashreplace")
            return "key_mismatch", f"record key {shown!r} is not the body's {tenant}:{broker}:{symbol}"
        return None


def _pairs_with_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise _Duplicate(name)
            seen.add(name)
    return dict(pairs)


class _Duplicate(Exception):
    pass


def duplicate_key(value: bytes) -> str | None:
    """The first key that some object of ``value`` (valid JSON) has twice, or None. Exact, slow path."""
    try:
        json.loads(value, object_pairs_hook=_pairs_with_duplicates)
    except _Duplicate as exc:
        return str(exc.args[0])
    except ValueError:
        return None  # not the standard library's JSON (msgspec accepted it): nothing more to say
    return None


def _strings_kept(decoded: Any) -> int:
    """How many strings (keys and string values) a generic JSON value holds: a key given twice is kept once,
    and the value it was given first is gone."""
    if isinstance(decoded, dict):
        return len(decoded) + sum(1 if isinstance(v, str) else _strings_kept(v) for v in decoded.values())
    if isinstance(decoded, list):
        return sum(1 if isinstance(v, str) else _strings_kept(v) for v in decoded)
    return 1 if isinstance(decoded, str) else 0


_generic = msgspec.json.Decoder()


def repeated_key(value: bytes) -> str | None:
    """:func:`duplicate_key` of ``value`` (valid JSON), fast when it has no backslash: then every quote delimits a
    string, two quotes per key and per string value, so its quotes are twice the strings a parse keeps exactly when
    no key is given twice (a repeated key adds two quotes and keeps none). Otherwise (or with an escape) the exact
    parse."""
    if b"\\" not in value and value.count(b'"') == 2 * _strings_kept(_generic.decode(value)):
        return None
    return duplicate_key(value)


def _tick_has_duplicate(value: bytes, tick: Tick) -> str | None:
    """The key given twice in ``value`` (a decoded tick, so no unknown keys and every required key present), or None.

    Each key and each of the three name strings adds two quotes (names allow no quote or backslash), so the quote
    count bounds the number of keys from above: at most the required ones means none twice. Otherwise the keys are
    more than the distinct ones present (the required plus each optional whose quoted name occurs) exactly when one
    is repeated; the exact parse decides when an escape or a name that spells an optional key makes that count
    unsure."""
    keys = value.count(b'"') // 2 - _TICK_STRINGS
    if keys <= _TICK_REQUIRED:
        return None
    if (b"\\" in value or tick.tenant in _TICK_OPTIONAL_NAMES or tick.broker in _TICK_OPTIONAL_NAMES
            or tick.symbol in _TICK_OPTIONAL_NAMES):
        return duplicate_key(value)
    present = _TICK_REQUIRED + sum(quoted in value for quoted in _TICK_OPTIONAL_QUOTED)
    return duplicate_key(value) if keys > present else None


def _price_problem(field: str, price: float, rules: DomainRules) -> Problem | None:
    if rules.min_price <= price <= rules.max_price:
        return None
    kind = "not finite" if not math.isfinite(price) else f"outside [{rules.min_price:g}, {rules.max_price:g}]"
    return "price_out_of_range", f"{field} {price!r} is {kind} - at `$.{field}`"


def _future_problem(time_msc: float, now_ms: int, rules: DomainRules) -> Problem | None:
    if time_msc - now_ms <= rules.max_future_skew_ms:
        return None
    return "future_time", (f"time_msc {int(time_msc)} is {(time_msc - now_ms) / 1000:.0f} s ahead of the wall clock "
                           f"(allowed {rules.max_future_skew_ms} ms): topic times are UTC; convert MT5 server time")


def tick_check(rules: DomainRules) -> Check:
    keys = _KeyParts()
    lo, hi, crossed_ok, skew = rules.min_price, rules.max_price, rules.accept_crossed, rules.max_future_skew_ms

    def check(key: bytes | None, value: bytes, t: Tick, now_ms: int) -> Problem | None:
        twice = _tick_has_duplicate(value, t)
        if twice is not None:  # first: with a key given twice, every other check may have looked at the wrong one
            return "duplicate_key", f"key {twice!r} appears more than once"
        bid, ask = t.bid, t.ask
        if not (lo <= bid <= hi and lo <= ask <= hi and (t.last == 0.0 or lo <= t.last <= hi)):
            return (_price_problem("bid", bid, rules) or _price_problem("ask", ask, rules)
                    or _price_problem("last", t.last, rules))
        if bid > ask and not crossed_ok:
            return "crossed_quote", f"bid {bid!r} > ask {ask!r} (TICKWIRE_CROSSED_QUOTES=reject)"
        if t.time_msc - now_ms > skew:
            return _future_problem(t.time_msc, now_ms, rules)
        return keys.mismatch(key, t.tenant, t.broker, t.symbol)

    return check


def signal_check(rules: DomainRules) -> Check:
    keys = _KeyParts()

    def check(key: bytes | None, value: bytes, s: Signal, now_ms: int) -> Problem | None:
        twice = repeated_key(value)
        if twice is not None:
            return "duplicate_key", f"key {twice!r} appears more than once"
        for field in ("price", "sl", "tp"):
            price = getattr(s, field)
            if price is not None and (problem := _price_problem(field, price, rules)) is not None:
                return problem
        return _future_problem(s.time_msc, now_ms, rules) or keys.mismatch(key, s.tenant, s.broker, s.symbol)

    return check


def keyed_check(series: Callable[[Any], tuple[str, str, str]]) -> Check:
    """Key and duplicate-key checks only (derived topics: candles, enriched signals)."""
    keys = _KeyParts()

    def check(key: bytes | None, value: bytes, message: Any, now_ms: int) -> Problem | None:
        twice = repeated_key(value)
        if twice is not None:
            return "duplicate_key", f"key {twice!r} appears more than once"
        return keys.mismatch(key, *series(message))

    return check


def check_for(message_type: type[msgspec.Struct], rules: DomainRules) -> Check:
    """The domain check of ``message_type``."""
    if message_type is Tick:
        return tick_check(rules)
    if message_type is Signal:
        return signal_check(rules)
    if message_type is Candle:
        return keyed_check(lambda c: (c.tenant, c.broker, c.symbol))
    if message_type is EnrichedSignal:
        return keyed_check(lambda e: (e.signal.tenant, e.signal.broker, e.signal.symbol))
    raise TypeError(f"no domain check for {message_type.__name__}")
