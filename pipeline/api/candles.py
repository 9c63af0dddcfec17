"""``/v1/candles``: closed (and amended) bars from ClickHouse ``candles FINAL``, newest first.

One row per bar (an amended bar replaces the bar it amends). Only the
caller's tenant; an unknown symbol gives an empty list.
"""

from __future__ import annotations

from typing import Any

from pipeline.api.context import ApiContext
from pipeline.api.pages import LIMIT_SQL, Page, page_params
from pipeline.api.params import broker_param, symbol_param, timeframe_param
from pipeline.api.routes import Call, Route
from pipeline.config import Settings

CANDLES_SQL = """
SELECT broker, symbol, timeframe, toUnixTimestamp64Milli(start) AS start_ms, toUnixTimestamp64Milli(end) AS end_ms,
       open, high, low, close, bid_close, ask_close, spread_avg, spread_min, spread_max, ticks, volume, volume_real
FROM {db}.candles FINAL
WHERE {where}
ORDER BY start DESC, broker
""" + LIMIT_SQL


async def candles(ctx: ApiContext, call: Call) -> dict[str, Any]:
    page = Page.of(call.params)
    where = ["tenant = {tenant:String}", "symbol = {symbol:String}", "timeframe = {timeframe:String}",
             *page.conditions("start")]
    parameters = {"tenant": call.tenant, "symbol": call.params["symbol"], "timeframe": call.params["timeframe"],
                  **page.parameters()}
    if call.params["broker"] is not None:
        where.append("broker = {broker:String}")
        parameters["broker"] = call.params["broker"]
    sql = CANDLES_SQL.replace("{db}", ctx.reads.database).replace("{where}", " AND ".join(where))
    async with ctx.using("clickhouse"):
        columns, rows = await ctx.reads.query(sql, parameters)
    return {"data": [dict(zip(columns, row)) for row in rows], "next_cursor": page.next_cursor([row[3] for row in rows])}


_NUMBER = {"type": "number"}
_INTEGER = {"type": "integer"}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Candle": {
        "type": "object", "additionalProperties": False,
        "required": ["broker", "symbol", "timeframe", "start_ms", "end_ms", "open", "high", "low", "close", "bid_close",
                     "ask_close", "spread_avg", "spread_min", "spread_max", "ticks", "volume", "volume_real"],
        "properties": {
            "broker": {"type": "string"}, "symbol": {"type": "string"}, "timeframe": {"type": "string"},
            "start_ms": _INTEGER, "end_ms": _INTEGER, "open": _NUMBER, "high": _NUMBER, "low": _NUMBER, "close": _NUMBER,
            "bid_close": _NUMBER, "ask_close": _NUMBER, "spread_avg": _NUMBER, "spread_min": _NUMBER,
            "spread_max": _NUMBER, "ticks": _INTEGER, "volume": _INTEGER, "volume_real": _NUMBER,
        },
    },
    "CandlePage": {
        "type": "object", "additionalProperties": False, "required": ["data", "next_cursor"],
        "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/Candle"}},
                       "next_cursor": {"type": ["string", "null"]}},
    },
}


def routes(settings: Settings) -> tuple[Route, ...]:
    return (
        Route("GET", "/v1/candles", "Bars of a symbol on a timeframe, newest first", "candles", candles, "CandlePage",
              params=(symbol_param(), timeframe_param(tuple(tf.name for tf in settings.timeframes)), broker_param(),
                      *page_params("bars")), cached=True,
              description="OHLC of the mid price per bar (epoch-aligned UTC windows [start_ms, end_ms)), with bid/ask "
                          "close, spread statistics, tick count and volume. `from`/`to` bound the bar's start. Answers "
                          "are kept until the worker's next checkpoint commit (with a ClickHouse server: for 1 s); "
                          "`Cache-Control: no-cache` asks for a fresh one."),
    )
