"""``/v1/signals``: stored signals from ClickHouse ``signals FINAL`` (one row per signal id), newest first.

Only the caller's tenant; ``symbol`` and ``strategy`` narrow the list, and an
unknown one gives an empty list.
"""

from __future__ import annotations

from typing import Any

from pipeline.api.context import ApiContext
from pipeline.api.pages import LIMIT_SQL, Page, page_params
from pipeline.api.params import Name, broker_param, symbol_param
from pipeline.api.routes import Call, Route
from pipeline.config import Settings
from pipeline.contracts.schemas import STRATEGY

SIGNALS_SQL = """
SELECT id, broker, strategy, symbol, toUnixTimestamp64Milli(time) AS time_msc, action, confidence, price, sl, tp, reason
FROM {db}.signals FINAL
WHERE {where}
ORDER BY time DESC, id
""" + LIMIT_SQL

_FILTERS = ("symbol", "strategy", "broker")


async def signals(ctx: ApiContext, call: Call) -> dict[str, Any]:
    page = Page.of(call.params)
    where = ["tenant = {tenant:String}", *page.conditions("time")]
    parameters: dict[str, Any] = {"tenant": call.tenant, **page.parameters()}
    for name in _FILTERS:
        if call.params[name] is not None:
            where.append(f"{name} = {{{name}:String}}")
            parameters[name] = call.params[name]
    sql = SIGNALS_SQL.replace("{db}", ctx.reads.database).replace("{where}", " AND ".join(where))
    async with ctx.using("clickhouse"):
        columns, rows = await ctx.reads.query(sql, parameters)
    return {"data": [dict(zip(columns, row)) for row in rows], "next_cursor": page.next_cursor([row[4] for row in rows])}


_OPTIONAL_NUMBER = {"type": ["number", "null"]}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Signal": {
        "type": "object", "additionalProperties": False,
        "required": ["id", "broker", "strategy", "symbol", "time_msc", "action", "confidence", "price", "sl", "tp", "reason"],
        "properties": {
            "id": {"type": "string"}, "broker": {"type": "string"}, "strategy": {"type": "string"},
            "symbol": {"type": "string"}, "time_msc": {"type": "integer"},
            "action": {"type": "string", "enum": ["buy", "sell", "close", "hold"]},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "price": _OPTIONAL_NUMBER, "sl": _OPTIONAL_NUMBER, "tp": _OPTIONAL_NUMBER,
            "reason": {"type": ["string", "null"]},
        },
    },
    "SignalPage": {
        "type": "object", "additionalProperties": False, "required": ["data", "next_cursor"],
        "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/Signal"}},
                       "next_cursor": {"type": ["string", "null"]}},
    },
}


def routes(settings: Settings) -> tuple[Route, ...]:
    return (
        Route("GET", "/v1/signals", "Stored signals, newest first", "signals", signals, "SignalPage",
              params=(symbol_param("Only signals on this symbol (absent: every symbol).", required=False),
                      Name("strategy", "Only this strategy's signals (absent: every strategy's).", STRATEGY),
                      broker_param(), *page_params("signals")),
              description="Each signal once (a resent signal id is the same signal), as the strategy sent it."),
    )
