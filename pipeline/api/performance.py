"""``/v1/strategies/performance``: how each strategy's signals turned out, per (strategy, symbol, horizon),
aggregated from ClickHouse ``signal_outcomes FINAL`` (one row per signal and horizon; see
pipeline.derive.outcomes for the definitions). Only the caller's tenant; ``strategy``, ``symbol`` and
``horizon`` narrow it, and an unknown name gives an empty list.

What is counted: the outcomes of **buy and sell** signals that have a directed return (an entry and at least
one tick in the window). Close and hold have no direction, so no return and no hits: they are left out.

- ``count``: those outcomes; ``tp_first`` / ``sl_first``: how many reached their tp / sl first;
- ``hit_rate`` = ``tp_first / count``: an outcome where **neither** level was reached within the horizon
  (or whose signal set no tp) counts as **not a hit**, as one whose sl came first;
- ``mean_return`` and ``median_return`` of the directed returns (the exact median: the mean of the two
  middle values for an even count);
- ``max_adverse_excursion``: the worst (largest) adverse excursion of those outcomes.
"""

from __future__ import annotations

from typing import Any

from pipeline.api.context import ApiContext
from pipeline.api.params import Choice, Name, symbol_param
from pipeline.api.routes import Call, Route
from pipeline.config import Settings
from pipeline.contracts.schemas import STRATEGY

PERFORMANCE_SQL = """
SELECT strategy, symbol, argMax(horizon, signal_time) AS horizon, horizon_ms, count() AS count,
       countIf(first_hit = 'tp') AS tp_first, countIf(first_hit = 'sl') AS sl_first,
       countIf(first_hit = 'tp') / count() AS hit_rate,
       avg(directed_return) AS mean_return,
       quantileExactInclusive(0.5)(directed_return) AS median_return,
       max(mae) AS max_adverse_excursion
FROM {db}.signal_outcomes FINAL
WHERE {where}
GROUP BY strategy, symbol, horizon_ms
ORDER BY strategy, symbol, horizon_ms
"""


async def performance(ctx: ApiContext, call: Call) -> dict[str, Any]:
    where = ["tenant = {tenant:String}", "action IN ('buy', 'sell')", "directed_return IS NOT NULL"]
    parameters: dict[str, Any] = {"tenant": call.tenant}
    for name in ("strategy", "symbol"):
        if call.params[name] is not None:
            where.append(f"{name} = {{{name}:String}}")
            parameters[name] = call.params[name]
    if call.params["horizon"] is not None:
        where.append("horizon_ms = {horizon_ms:UInt64}")
        parameters["horizon_ms"] = _horizon_ms(ctx.settings, call.params["horizon"])
    sql = PERFORMANCE_SQL.replace("{db}", ctx.reads.database).replace("{where}", " AND ".join(where))
    async with ctx.using("clickhouse"):
        columns, rows = await ctx.reads.query(sql, parameters)
    return {"data": [dict(zip(columns, row)) for row in rows]}


def _horizon_ms(settings: Settings, name: str) -> int:
    return next(h.ms for h in settings.outcome_horizon_list if h.name == name)


_FRACTION = {"type": "number", "minimum": 0, "maximum": 1}

SCHEMAS: dict[str, dict[str, Any]] = {
    "StrategyPerformance": {
        "type": "object", "additionalProperties": False,
        "required": ["strategy", "symbol", "horizon", "horizon_ms", "count", "tp_first", "sl_first", "hit_rate",
                     "mean_return", "median_return", "max_adverse_excursion"],
        "properties": {
            "strategy": {"type": "string"}, "symbol": {"type": "string"},
            "horizon": {"type": "string", "description": "As configured (TICKWIRE_OUTCOME_HORIZONS), e.g. 1h."},
            "horizon_ms": {"type": "integer", "minimum": 1},
            "count": {"type": "integer", "minimum": 1,
                      "description": "Outcomes of buy and sell signals with a directed return (close/hold: none)."},
            "tp_first": {"type": "integer", "minimum": 0, "description": "Outcomes whose tp was reached before the sl."},
            "sl_first": {"type": "integer", "minimum": 0,
                         "description": "Outcomes whose sl was reached first (or in the same millisecond as the tp)."},
            "hit_rate": {**_FRACTION, "description": "tp_first / count: an outcome where neither level was reached "
                                                     "(or without a tp) is not a hit."},
            "mean_return": {"type": "number", "description": "Mean directed return (buy: the mid's relative move; "
                                                             "sell: its opposite)."},
            "median_return": {"type": "number", "description": "Exact median of the directed returns."},
            "max_adverse_excursion": {"type": "number", "minimum": 0,
                                      "description": "The worst adverse excursion (fraction of the entry)."},
        },
    },
    "StrategyPerformances": {
        "type": "object", "additionalProperties": False, "required": ["data"],
        "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/StrategyPerformance"}}},
    },
}


def routes(settings: Settings) -> tuple[Route, ...]:
    horizons = tuple(h.name for h in settings.outcome_horizon_list)
    return (
        Route("GET", "/v1/strategies/performance", "How each strategy's signals turned out", "strategies", performance,
              "StrategyPerformances",
              params=(Name("strategy", "Only this strategy (absent: every strategy).", STRATEGY),
                      symbol_param("Only signals on this symbol (absent: every symbol).", required=False),
                      Choice("horizon", "Only this horizon (absent: every horizon).", horizons)),
              cached=True,
              description="Per (strategy, symbol, horizon), from the signals' outcomes (the outcomes stage computes "
                          "each signal's at each horizon once it has passed in event time): how many buy and sell "
                          "signals, how many reached their tp first and their sl first, the hit rate (tp first / "
                          "count: neither reached counts as not a hit), the mean and median directed return and the "
                          "worst adverse excursion. Close and hold signals have no direction and are not counted. "
                          "Sorted by strategy, symbol, horizon. Answers are kept until the worker's next checkpoint "
                          "commit (with a ClickHouse server: for 1 s); `Cache-Control: no-cache` asks for a fresh one."),
    )
