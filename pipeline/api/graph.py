"""``/v1/graph/neighbors`` and ``/v1/graph/strategies``, through the graph role
(:class:`~pipeline.stores.graph.base.GraphStore`), always within the caller's tenant.

An unknown symbol has no neighbours and no strategies: an empty list.
"""

from __future__ import annotations

from typing import Any

from pipeline.api.context import ApiContext
from pipeline.api.params import Choice, Integer, Number, symbol_param
from pipeline.api.routes import Call, Route
from pipeline.config import Settings
from pipeline.stores.graph.base import MAX_DEPTH, MIN_DEPTH


async def neighbors(ctx: ApiContext, call: Call) -> dict[str, Any]:
    async with ctx.using("graph"):
        found = await ctx.graph.neighbors(call.tenant, call.params["symbol"], depth=call.params["depth"],
                                          min_weight=call.params["min_weight"], timeframe=call.params["timeframe"])
    return {"data": [{"symbol": n.symbol, "depth": n.depth, "weight": n.weight, "timeframe": n.timeframe, "via": n.via}
                     for n in found]}


async def strategies(ctx: ApiContext, call: Call) -> dict[str, Any]:
    async with ctx.using("graph"):
        edges = await ctx.graph.strategies(call.tenant, call.params["symbol"])
    return {"data": [{"strategy": e.strategy, "symbol": e.symbol, "signals": e.signals, "last_action": e.last_action,
                      "mean_confidence": e.mean_confidence, "last_time_ms": e.last_time_ms} for e in edges]}


SCHEMAS: dict[str, dict[str, Any]] = {
    "Neighbor": {
        "type": "object", "additionalProperties": False, "required": ["symbol", "depth", "weight", "timeframe", "via"],
        "properties": {
            "symbol": {"type": "string"},
            "depth": {"type": "integer", "minimum": MIN_DEPTH, "maximum": MAX_DEPTH, "description": "Fewest hops."},
            "weight": {"type": "number", "minimum": -1, "maximum": 1,
                       "description": "Correlation of `via` and `symbol` (the last hop's edge)."},
            "timeframe": {"type": "string"}, "via": {"type": "string"},
        },
    },
    "Neighbors": {
        "type": "object", "additionalProperties": False, "required": ["data"],
        "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/Neighbor"}}},
    },
    "StrategyEdge": {
        "type": "object", "additionalProperties": False,
        "required": ["strategy", "symbol", "signals", "last_action", "mean_confidence", "last_time_ms"],
        "properties": {
            "strategy": {"type": "string"}, "symbol": {"type": "string"}, "signals": {"type": "integer", "minimum": 1},
            "last_action": {"type": "string"}, "mean_confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "last_time_ms": {"type": "integer"},
        },
    },
    "StrategyEdges": {
        "type": "object", "additionalProperties": False, "required": ["data"],
        "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/StrategyEdge"}}},
    },
}


def routes(settings: Settings) -> tuple[Route, ...]:
    timeframes = tuple(tf.name for tf in settings.timeframes)
    return (
        Route("GET", "/v1/graph/neighbors", "Symbols correlated with a symbol", "graph", neighbors, "Neighbors",
              params=(symbol_param(),
                      Integer("depth", "Hops to follow.", MIN_DEPTH, MAX_DEPTH, default=1),
                      Number("min_weight", "Only edges with |correlation| at least this (a weaker edge blocks a path).",
                             0.0, 1.0, default=settings.correlation_threshold),
                      Choice("timeframe", "Only edges of this timeframe (absent: any).", timeframes)),
              description="Pearson correlation of bar returns, per timeframe; strong negative correlations count. "
                          "Sorted by depth, then |weight| descending."),
        Route("GET", "/v1/graph/strategies", "Strategies that signalled on a symbol", "graph", strategies,
              "StrategyEdges", params=(symbol_param(),),
              description="Per strategy: how many signals, the last action, mean confidence and last signal time."),
    )
