"""Message types of the versioned schemas in ``schemas/``, as msgspec structs.

The JSON Schema files are the published contract; these structs are the fast
decoder for them and are exactly as strict (``tests/test_schemas.py`` checks
agreement against a JSON Schema validator). Integers are declared as floats
with ``multiple_of=1`` because JSON Schema's ``integer`` also admits ``5.0``;
the decoder converts them back to ``int`` where the value is used.

Input messages are structs with ``gc=False``: they hold only strings and
numbers, so they can never be part of a reference cycle, and untracked they
do not make the cyclic garbage collector run while a batch is decoded.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, get_args

import msgspec

_NO_TRAILING_NEWLINE = r"$(?!\n)"


class NamePattern:
    """A schema ``pattern`` for a name field, checked with a cache of names already seen.

    Names (tenants, brokers, symbols, strategies) repeat on almost every
    record, and a regex per field per record is most of the decode cost; a
    set lookup is not. The cache is bounded (cleared when full).
    """

    MAX_CACHED = 100_000

    def __init__(self, regex: str) -> None:
        self.regex = regex + _NO_TRAILING_NEWLINE
        self._compiled = re.compile(self.regex)
        self._seen: set[str] = set()

    def check(self, field: str, value: str) -> None:
        """Raise ValueError (as msgspec words it) unless ``value`` matches."""
        if value in self._seen:
            return
        if not self._compiled.search(value):
            raise ValueError(f"Expected `str` matching regex {self.regex!r} - at `$.{field}`")
        if len(self._seen) >= self.MAX_CACHED:
            self._seen.clear()
        self._seen.add(value)


TENANT = NamePattern(r"^[a-z0-9][a-z0-9_-]{0,62}")
BROKER = NamePattern(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
SYMBOL = NamePattern(r"^[A-Za-z0-9#][A-Za-z0-9#._+-]{0,31}")
STRATEGY = NamePattern(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SIGNAL_ID = NamePattern(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
TimeMsc = Annotated[float, msgspec.Meta(ge=0, le=4_102_444_800_000, multiple_of=1)]
Price = Annotated[float, msgspec.Meta(gt=0, le=1e9)]
NonNegPrice = Annotated[float, msgspec.Meta(ge=0, le=1e9)]
Volume = Annotated[float, msgspec.Meta(ge=0, le=9_007_199_254_740_991, multiple_of=1)]
VolumeReal = Annotated[float, msgspec.Meta(ge=0, le=1e15)]
Flags = Annotated[float, msgspec.Meta(ge=0, le=255, multiple_of=1)]
Confidence = Annotated[float, msgspec.Meta(ge=0, le=1)]
Reason = Annotated[str, msgspec.Meta(max_length=1024)]
#: JSON Schema ``"const": 1`` admits 1 and 1.0 (not true); so does this.
Version = Annotated[float, msgspec.Meta(ge=1, le=1)]

# MT5 TICK_FLAG_* bits
TICK_FLAG_BID = 2
TICK_FLAG_ASK = 4
TICK_FLAG_LAST = 8
TICK_FLAG_VOLUME = 16
TICK_FLAG_BUY = 32
TICK_FLAG_SELL = 64


class Tick(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """``tick.v1``: one MqlTick of ``symbol`` at ``broker`` for ``tenant``."""

    v: Version
    tenant: str
    broker: str
    symbol: str
    time_msc: TimeMsc
    bid: Price
    ask: Price
    last: NonNegPrice = 0.0
    volume: Volume = 0.0
    volume_real: VolumeReal = 0.0
    flags: Flags = 0.0

    def __post_init__(self) -> None:
        TENANT.check("tenant", self.tenant)
        BROKER.check("broker", self.broker)
        SYMBOL.check("symbol", self.symbol)

    @property
    def key(self) -> str:
        """The Kafka key (partitioning and per-key ordering)."""
        return f"{self.tenant}:{self.broker}:{self.symbol}"


class Signal(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """``signal.v1``: a strategy's signal on ``symbol``; unique per (tenant, id)."""

    v: Version
    id: str
    tenant: str
    broker: str
    strategy: str
    symbol: str
    time_msc: TimeMsc
    action: Literal["buy", "sell", "close", "hold"]
    confidence: Confidence
    price: Price | None = None
    sl: Price | None = None
    tp: Price | None = None
    reason: Reason | None = None

    def __post_init__(self) -> None:
        SIGNAL_ID.check("id", self.id)
        TENANT.check("tenant", self.tenant)
        BROKER.check("broker", self.broker)
        STRATEGY.check("strategy", self.strategy)
        SYMBOL.check("symbol", self.symbol)

    @property
    def key(self) -> str:
        return f"{self.tenant}:{self.broker}:{self.symbol}"


#: A whole number as JSON Schema's ``integer`` has it (``5.0`` too); see the module docstring.
WholeMs = Annotated[float, msgspec.Meta(ge=0, multiple_of=1)]
#: The version of a bar message: 1 (``candle.v1``) or 2 (``candle.v2``: with indicators).
CandleVersion = Annotated[float, msgspec.Meta(ge=1, le=2, multiple_of=1)]
#: An indicator's name (``sma_20``, ``macd``, ...; pipeline.contracts.indicators) and its finite value.
IndicatorName = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$(?!\n)")]
FiniteNumber = Annotated[float, msgspec.Meta(ge=-1.7976931348623157e308, le=1.7976931348623157e308)]


class Candle(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``candle.v1`` or ``candle.v2``: a closed mid-price bar; identity (tenant, broker, symbol, timeframe, start_ms).

    ``v`` 2 adds ``indicators`` (required there, absent in v1): name -> value of the indicators defined at this bar
    (one in its warm-up is absent). The ingest stage publishes v2; v1 messages still decode (no indicators).
    Whole numbers (``start_ms``, ``end_ms``, ``ticks``, ``volume``, ``v``) are floats with ``multiple_of=1`` as
    JSON Schema's ``integer`` admits ``5.0``: use ``int(...)`` where an int is needed (bars built here hold ints).
    """

    v: CandleVersion
    tenant: str
    broker: str
    symbol: str
    timeframe: Annotated[str, msgspec.Meta(pattern=r"^[1-9][0-9]{0,3}[smhd]$")]
    start_ms: WholeMs
    end_ms: WholeMs
    open: float
    high: float
    low: float
    close: float
    bid_close: float
    ask_close: float
    spread_avg: float
    spread_min: float
    spread_max: float
    ticks: Annotated[float, msgspec.Meta(ge=1, multiple_of=1)]
    volume: WholeMs
    volume_real: Annotated[float, msgspec.Meta(ge=0)]
    indicators: dict[IndicatorName, FiniteNumber] | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        if self.v == 1 and self.indicators is not msgspec.UNSET:
            raise ValueError("Object contains unknown field `indicators` (candle.v1 has none) - at `$`")
        if self.v == 2 and self.indicators is msgspec.UNSET:
            raise ValueError("Object missing required field `indicators` (candle.v2) - at `$`")

    @property
    def key(self) -> str:
        return f"{self.tenant}:{self.broker}:{self.symbol}"

    @property
    def indicator_values(self) -> dict[str, float]:
        """The bar's indicators (none for a ``candle.v1`` message)."""
        return {} if self.indicators is msgspec.UNSET else self.indicators


class Market(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    bid: float
    ask: float
    mid: float
    spread: float
    tick_time_msc: int
    tick_age_ms: int
    slippage: float | None


class SimilarPattern(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    symbol: str
    broker: str
    timeframe: str
    window_end_ms: int
    distance: float
    forward_return: float | None


class EnrichedSignal(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``signal.enriched.v1``: a signal, the market when it was processed, and similar past patterns."""

    v: Literal[1]
    signal: Signal
    market: Market | None
    similar: list[SimilarPattern]
    enriched_at_ms: int

    @property
    def key(self) -> str:
        return self.signal.key


#: A whole number >= 0 as JSON Schema's ``integer`` has it (``5.0`` too); built from ints, so encoded as ints.
_Whole = Annotated[float, msgspec.Meta(ge=0, multiple_of=1)]
_PositivePrice = Annotated[float, msgspec.Meta(gt=0)]
#: A horizon (pipeline.contracts.timeframes syntax), as configured in ``TICKWIRE_OUTCOME_HORIZONS``.
HorizonName = Annotated[str, msgspec.Meta(pattern=r"^[1-9][0-9]{0,3}[smhd]$(?!\n)")]


class SignalOutcome(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """``signal.outcome.v1``: what the market did after a signal over one horizon (pipeline.derive.outcomes).

    Identity (tenant, signal_id, horizon_ms). The definitions (entry, direction, hits, adverse excursion)
    are in the JSON Schema's descriptions and in pipeline.derive.outcomes. Whole numbers are floats with
    ``multiple_of=1``, as JSON Schema's ``integer`` admits ``5.0``; outcomes built here hold ints.
    """

    v: Version
    tenant: str
    broker: str
    symbol: str
    strategy: str
    signal_id: str
    action: Literal["buy", "sell", "close", "hold"]
    signal_time_msc: TimeMsc
    horizon: HorizonName
    horizon_ms: Annotated[float, msgspec.Meta(ge=1, multiple_of=1)]
    horizon_end_msc: _Whole
    entry: _PositivePrice | None
    entry_source: Literal["price", "first_tick"] | None
    tp: _PositivePrice | None
    sl: _PositivePrice | None
    exit_mid: _PositivePrice | None
    exit_time_msc: _Whole | None
    move: float | None
    directed_return: float | None
    tp_hit_msc: _Whole | None
    sl_hit_msc: _Whole | None
    first_hit: Literal["tp", "sl"] | None
    first_hit_msc: _Whole | None
    mae: Annotated[float, msgspec.Meta(ge=0)] | None
    ticks: _Whole

    def __post_init__(self) -> None:
        TENANT.check("tenant", self.tenant)
        BROKER.check("broker", self.broker)
        SYMBOL.check("symbol", self.symbol)
        STRATEGY.check("strategy", self.strategy)
        SIGNAL_ID.check("signal_id", self.signal_id)

    @property
    def key(self) -> str:
        return f"{self.tenant}:{self.broker}:{self.symbol}"


DlqReason = Literal[
    "oversize", "malformed_json", "schema_violation", "unknown_version", "duplicate_key", "key_mismatch",
    "price_out_of_range", "crossed_quote", "future_time", "store_rejected", "processing_error",
]
#: Every reason, in the order of the pipeline (decode, domain checks, stores).
DLQ_REASONS: tuple[str, ...] = get_args(DlqReason)


class DeadLetter(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``dlq.v1``: an unprocessable record, its original bytes (or their head) and its origin.

    ``stage`` says which stage refused it (null: written before stages existed). When the
    record was too large to carry, ``value_b64`` holds only its first bytes
    (``value_truncated``), with the full length and SHA-256: the whole record can be read
    from ``topic``/``partition``/``offset`` while the source topic retains it.
    """

    v: Literal[1]
    reason: DlqReason
    error: Annotated[str, msgspec.Meta(max_length=2048)]
    topic: str
    partition: Annotated[int, msgspec.Meta(ge=0)]
    offset: Annotated[int, msgspec.Meta(ge=0)]
    timestamp_ms: int | None
    key_b64: str | None
    value_b64: str | None
    failed_at_ms: Annotated[int, msgspec.Meta(ge=0)]
    stage: str | None = None
    value_size: Annotated[int, msgspec.Meta(ge=0)] | None = None
    value_sha256: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")] | None = None
    value_truncated: bool = False
    key_truncated: bool = False


SCHEMA_TYPES: dict[str, type[msgspec.Struct]] = {
    "tick.v1": Tick, "signal.v1": Signal, "candle.v1": Candle, "candle.v2": Candle, "signal.enriched.v1": EnrichedSignal,
    "signal.outcome.v1": SignalOutcome, "dlq.v1": DeadLetter,
}
#: The bar schemas :class:`Candle` decodes (by ``v``); the ingest stage publishes the newest.
CANDLE_SCHEMAS = ("candle.v1", "candle.v2")
