"""``/v1/patterns/similar`` and ``/v1/patterns/search``: "what happened after shapes like this", per tenant.

Both search the vector role (:class:`~pipeline.stores.vectors.base.VectorStore`), which
only ever considers the tenant it is given: here, always the caller's.

- ``similar``: the symbol's current shape (:mod:`pipeline.derive.current_shape`,
  the embedding of its last ``WINDOW_BARS + 1`` closed bars on ``timeframe``,
  the same function the signal enricher uses); the
  answer is the ``k`` nearest earlier windows of the tenant on that timeframe
  (any symbol) whose forward return is known. With several brokers quoting
  the symbol, the one with the newest bar is used (or ``broker`` if given).
  Fewer than ``WINDOW_BARS + 1`` bars (or a flat window): no shape, empty list.
  The current shapes of concurrent requests (one tenant and timeframe) are read
  in one batch (:mod:`pipeline.api.batched_reads`); each search then runs in
  one of the tenant's query slots.
- ``search``: the same search for a vector the caller brings
  (:data:`~pipeline.derive.embedding.DIMENSION` numbers), with optional filters.
  Cosine distance ignores length, so the vector is used by its direction; the
  zero vector has none, and nothing is similar to it (empty list).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from pipeline.api.context import ApiContext
from pipeline.api.errors import bad_parameter
from pipeline.api.params import MAX_TIME_MS, Integer, broker_param, openapi_pattern, symbol_param, timeframe_param
from pipeline.api.routes import Body, Call, Route
from pipeline.config import Settings
from pipeline.contracts.schemas import BROKER, SYMBOL
from pipeline.derive import current_shape
from pipeline.derive.current_shape import Shape
from pipeline.derive.embedding import DIMENSION
from pipeline.stores.analytics import Queries
from pipeline.stores.vectors.base import PatternMatch

#: The most results one search returns.
MAX_RESULTS = 100


class SearchRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``POST /v1/patterns/search``, exactly as strict as its documented schema (:func:`_search_schema`).

    Integers are floats with ``multiple_of=1`` because JSON Schema's ``integer`` admits ``5.0``
    (as in :mod:`pipeline.contracts.schemas`); :func:`search` converts them.
    """

    vector: Annotated[list[float], msgspec.Meta(min_length=DIMENSION, max_length=DIMENSION)]
    k: Annotated[float, msgspec.Meta(ge=1, le=MAX_RESULTS, multiple_of=1)] | msgspec.UnsetType = msgspec.UNSET
    timeframe: str | msgspec.UnsetType = msgspec.UNSET
    symbol: Annotated[str, msgspec.Meta(pattern=SYMBOL.regex)] | msgspec.UnsetType = msgspec.UNSET
    broker: Annotated[str, msgspec.Meta(pattern=BROKER.regex)] | msgspec.UnsetType = msgspec.UNSET
    before_ms: Annotated[float, msgspec.Meta(ge=0, le=MAX_TIME_MS, multiple_of=1)] | msgspec.UnsetType = msgspec.UNSET
    with_forward_return_only: bool = False


def _match(m: PatternMatch) -> dict[str, Any]:
    return {"broker": m.key.broker, "symbol": m.key.symbol, "timeframe": m.key.timeframe,
            "window_end_ms": m.key.window_end_ms, "distance": m.distance, "forward_return": m.forward_return,
            "close": m.close, "volatility": m.volatility}


def _direction(vector: list[float]) -> list[float] | None:
    """The unit vector along ``vector`` (computed without overflow), or None for the zero vector."""
    scale = max(abs(x) for x in vector)
    if scale == 0:
        return None
    scaled = [x / scale for x in vector]
    norm = math.sqrt(math.fsum(x * x for x in scaled))
    return [x / norm for x in scaled]


@dataclass(frozen=True)
class CurrentShapes:
    """What concurrent ``similar`` requests share to have their current shapes read by one batch: all but the
    symbol (:mod:`pipeline.api.batched_reads`)."""

    reads: Queries
    tenant: str
    timeframe: str
    broker: str | None


async def current_shapes(group: CurrentShapes, symbols: Sequence[str]) -> dict[str, list[Shape]]:
    """The current shape of each of ``symbols`` at each broker (or only ``group.broker``) that has one, in one query
    (the definition of :mod:`pipeline.derive.current_shape`, for several symbols at once)."""
    found: dict[str, list[Shape]] = {symbol: [] for symbol in symbols}
    shapes = await current_shape.shapes_of_symbols(group.reads, group.timeframe, group.tenant, symbols, group.broker)
    for shape in shapes.values():
        found[shape.series[2]].append(shape)
    return found


async def similar(ctx: ApiContext, call: Call) -> dict[str, Any]:
    symbol, timeframe, broker = call.params["symbol"], call.params["timeframe"], call.params["broker"]
    async with ctx.using("clickhouse"):
        shapes = await ctx.batched.read(current_shapes, call.tenant, CurrentShapes(ctx.reads, call.tenant, timeframe, broker),
                                        symbol)
    if not shapes:
        return {"query": None, "data": []}
    shape = min(shapes, key=lambda s: (-s.window_end_ms, s.series[1]))  # newest bar, then broker name
    query = {"broker": shape.series[1], "symbol": symbol, "timeframe": timeframe, "window_end_ms": shape.window_end_ms}
    if shape.vector is None:
        return {"query": query, "data": []}
    async with ctx.query_slots.slot(call.tenant), ctx.using("vector"):
        matches = await ctx.vectors.search(call.tenant, shape.vector, call.params["k"], timeframe=timeframe,
                                           before_ms=shape.window_end_ms, with_forward_return_only=True)
    return {"query": query, "data": [_match(m) for m in matches]}


async def search(ctx: ApiContext, call: Call) -> dict[str, Any]:
    request: SearchRequest = call.body
    if not all(math.isfinite(x) for x in request.vector):
        raise bad_parameter("vector", "every component must be a finite number")
    timeframes = [tf.name for tf in ctx.settings.timeframes]
    if request.timeframe is not msgspec.UNSET and request.timeframe not in timeframes:
        raise bad_parameter("timeframe", f"must be one of {', '.join(timeframes)}")
    direction = _direction(request.vector)
    if direction is None:
        return {"data": []}

    def given(value: Any) -> Any:
        return None if value is msgspec.UNSET else value

    k = ctx.settings.similar_patterns_k if request.k is msgspec.UNSET else int(request.k)
    before_ms = None if request.before_ms is msgspec.UNSET else int(request.before_ms)
    async with ctx.using("vector"):
        matches = await ctx.vectors.search(
            call.tenant, direction, k, symbol=given(request.symbol), timeframe=given(request.timeframe),
            broker=given(request.broker), before_ms=before_ms, with_forward_return_only=request.with_forward_return_only)
    return {"data": [_match(m) for m in matches]}


_NUMBER = {"type": "number"}

SCHEMAS: dict[str, dict[str, Any]] = {
    "PatternMatch": {
        "type": "object", "additionalProperties": False,
        "required": ["broker", "symbol", "timeframe", "window_end_ms", "distance", "forward_return", "close", "volatility"],
        "properties": {
            "broker": {"type": "string"}, "symbol": {"type": "string"}, "timeframe": {"type": "string"},
            "window_end_ms": {"type": "integer", "description": "End (epoch ms) of the matched window's last bar."},
            "distance": {"type": "number", "description": "Cosine distance: 0 same shape, 2 opposite."},
            "forward_return": {"type": ["number", "null"],
                               "description": "log(close some bars later / close at window end); null if not known yet."},
            "close": _NUMBER, "volatility": _NUMBER,
        },
    },
    "PatternQuery": {
        "type": "object", "additionalProperties": False, "required": ["broker", "symbol", "timeframe", "window_end_ms"],
        "properties": {"broker": {"type": "string"}, "symbol": {"type": "string"}, "timeframe": {"type": "string"},
                       "window_end_ms": {"type": "integer"}},
    },
    "SimilarPatterns": {
        "type": "object", "additionalProperties": False, "required": ["query", "data"],
        "properties": {
            "query": {"oneOf": [{"$ref": "#/components/schemas/PatternQuery"}, {"type": "null"}],
                      "description": "The window that was embedded; null when the symbol has too few bars."},
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/PatternMatch"}},
        },
    },
    "PatternMatches": {
        "type": "object", "additionalProperties": False, "required": ["data"],
        "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/PatternMatch"}}},
    },
}


def _search_schema(timeframes: list[str], default_k: int) -> dict[str, Any]:
    return {
        "type": "object", "additionalProperties": False, "required": ["vector"],
        "properties": {
            "vector": {"type": "array", "minItems": DIMENSION, "maxItems": DIMENSION, "items": {"type": "number"},
                       "description": f"A pattern embedding ({DIMENSION} numbers, as pipeline.derive.embedding.embed makes)."},
            "k": {"type": "integer", "minimum": 1, "maximum": MAX_RESULTS, "default": default_k},
            "timeframe": {"type": "string", "enum": timeframes},
            "symbol": {"type": "string", "pattern": openapi_pattern(SYMBOL)},
            "broker": {"type": "string", "pattern": openapi_pattern(BROKER)},
            "before_ms": {"type": "integer", "minimum": 0, "maximum": MAX_TIME_MS,
                          "description": "Only windows ending strictly before this time (epoch ms)."},
            "with_forward_return_only": {"type": "boolean", "default": False},
        },
    }


def routes(settings: Settings) -> tuple[Route, ...]:
    timeframes = [tf.name for tf in settings.timeframes]
    k = Integer("k", "How many similar windows.", 1, MAX_RESULTS, default=settings.similar_patterns_k)
    return (
        Route("GET", "/v1/patterns/similar", "Past windows shaped like a symbol's current one", "patterns", similar,
              "SimilarPatterns", params=(symbol_param(), timeframe_param(tuple(timeframes)), k,
                                         broker_param("The broker whose bars make the current shape "
                                                      "(absent: the one with the newest bar).")),
              queries=False,
              description="Embeds the symbol's last closed bars and returns the nearest earlier windows of this "
                          "tenant on that timeframe whose forward return is known, nearest first."),
        Route("POST", "/v1/patterns/search", "Windows nearest to a given embedding", "patterns", search,
              "PatternMatches", body=Body(SearchRequest, _search_schema(timeframes, settings.similar_patterns_k)),
              errors=(413,),
              description="Nearest first; only this tenant's patterns. A zero vector matches nothing."),
    )
