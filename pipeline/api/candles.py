"""``/v1/candles`` and ``/v1/indicators``: closed (and amended) bars from ClickHouse ``candles FINAL``, newest first.

One row per bar (an amended bar replaces the bar it amends), with its
indicators (pipeline.contracts.indicators; one in its warm-up is absent; bars
stored before indicators existed have none). Only the caller's tenant; an
unknown symbol gives an empty list. ``/v1/indicators`` answers the same bars
with only their indicators, all or the ones named. Computed answers of
concurrent requests that differ only by symbol share one query
(:mod:`pipeline.api.batched_reads`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.api.context import ApiContext
from pipeline.api.errors import bad_parameter
from pipeline.api.pages import Page, page_params, pages_of_symbols
from pipeline.api.params import Param, broker_param, symbol_param, timeframe_param
from pipeline.api.routes import Call, Route
from pipeline.config import Settings
from pipeline.stores.analytics import Queries

#: The order of a list of bars: newest first, then by broker.
BARS_ORDER = "start DESC, broker"
#: The queries of a page of each of some symbols' bars (then page_of_each_symbol), as
#: :mod:`pipeline.api.batched_reads` coalesces them.
CANDLES_SQL = """
SELECT broker, symbol, timeframe, toUnixTimestamp64Milli(start) AS start_ms, toUnixTimestamp64Milli(end) AS end_ms,
       open, high, low, close, bid_close, ask_close, spread_avg, spread_min, spread_max, ticks, volume, volume_real,
       indicators
FROM {db}.candles FINAL
WHERE {where}
"""
INDICATORS_SQL = """
SELECT broker, symbol, timeframe, toUnixTimestamp64Milli(start) AS start_ms, toUnixTimestamp64Milli(end) AS end_ms,
       {indicators} AS indicators
FROM {db}.candles FINAL
WHERE {where}
"""


@dataclass(frozen=True)
class NameList(Param):
    """A comma-separated list of some of ``choices`` (no spaces), as a tuple in the order given, each once."""

    choices: tuple[str, ...]

    def parse(self, raw: str) -> tuple[str, ...]:
        names = raw.split(",")
        if any(name not in self.choices for name in names):
            raise bad_parameter(self.name, f"must be a comma-separated list of {', '.join(self.choices)}")
        return tuple(dict.fromkeys(names))

    def schema(self) -> dict[str, Any]:
        one = "(" + "|".join(re.escape(choice) for choice in self.choices) + ")"
        return {"type": "string", "pattern": f"^{one}(,{one})*$"}


@dataclass(frozen=True)
class BarPages:
    """What concurrent bar requests share to be answered by one query (:mod:`pipeline.api.batched_reads`):
    all but the symbol. ``template``: the query; ``extra``: its own parameters."""

    reads: Queries
    template: str
    tenant: str
    timeframe: str
    broker: str | None
    page: Page
    extra: tuple[tuple[str, Any], ...]


async def _bars(ctx: ApiContext, call: Call, template: str, extra: dict[str, Any]) -> dict[str, Any]:
    """One page of the caller's bars of a symbol and timeframe (``template``: the query), newest first."""
    page = Page.of(call.params)
    pages = BarPages(ctx.reads, template, call.tenant, call.params["timeframe"], call.params["broker"], page,
                     tuple(extra.items()))
    async with ctx.using("clickhouse"):
        data = await ctx.batched.read(bar_pages, call.tenant, pages, call.params["symbol"])
    return {"data": data, "next_cursor": page.next_cursor([row["start_ms"] for row in data])}


async def bar_pages(pages: BarPages, symbols: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """The page of each of ``symbols``, in one query."""
    where = ["tenant = {tenant:String}", "symbol IN {symbols:Array(String)}", "timeframe = {timeframe:String}",
             *pages.page.conditions("start")]
    parameters = {"tenant": pages.tenant, "symbols": list(symbols), "timeframe": pages.timeframe,
                  **pages.page.parameters(), **{name: list(value) if isinstance(value, tuple) else value
                                                for name, value in pages.extra}}
    if pages.broker is not None:
        where.append("broker = {broker:String}")
        parameters["broker"] = pages.broker
    return await pages_of_symbols(pages.reads, pages.template, where, parameters, BARS_ORDER, symbols)


async def candles(ctx: ApiContext, call: Call) -> dict[str, Any]:
    return await _bars(ctx, call, CANDLES_SQL, {})


async def indicators(ctx: ApiContext, call: Call) -> dict[str, Any]:
    names = call.params["names"]
    if names is None:
        return await _bars(ctx, call, INDICATORS_SQL.replace("{indicators}", "indicators"), {})
    chosen = "mapFilter((name, value) -> has({names:Array(String)}, name), indicators)"
    return await _bars(ctx, call, INDICATORS_SQL.replace("{indicators}", chosen), {"names": names})


_NUMBER = {"type": "number"}
_INTEGER = {"type": "integer"}
_INDICATORS = {"type": "object", "additionalProperties": _NUMBER,
               "description": "The bar's indicators by name (sma_<n>, ema_<n>, rsi_14, macd, macd_signal, macd_hist, "
                              "bb_upper, bb_middle, bb_lower, atr_14, vwap); one not defined yet (its warm-up) is "
                              "absent; empty for bars stored before indicators existed."}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Candle": {
        "type": "object", "additionalProperties": False,
        "required": ["broker", "symbol", "timeframe", "start_ms", "end_ms", "open", "high", "low", "close", "bid_close",
                     "ask_close", "spread_avg", "spread_min", "spread_max", "ticks", "volume", "volume_real", "indicators"],
        "properties": {
            "broker": {"type": "string"}, "symbol": {"type": "string"}, "timeframe": {"type": "string"},
            "start_ms": _INTEGER, "end_ms": _INTEGER, "open": _NUMBER, "high": _NUMBER, "low": _NUMBER, "close": _NUMBER,
            "bid_close": _NUMBER, "ask_close": _NUMBER, "spread_avg": _NUMBER, "spread_min": _NUMBER,
            "spread_max": _NUMBER, "ticks": _INTEGER, "volume": _INTEGER, "volume_real": _NUMBER,
            "indicators": _INDICATORS,
        },
    },
    "CandlePage": {
        "type": "object", "additionalProperties": False, "required": ["data", "next_cursor"],
        "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/Candle"}},
                       "next_cursor": {"type": ["string", "null"]}},
    },
    "IndicatorBar": {
        "type": "object", "additionalProperties": False,
        "required": ["broker", "symbol", "timeframe", "start_ms", "end_ms", "indicators"],
        "properties": {"broker": {"type": "string"}, "symbol": {"type": "string"}, "timeframe": {"type": "string"},
                       "start_ms": _INTEGER, "end_ms": _INTEGER, "indicators": _INDICATORS},
    },
    "IndicatorPage": {
        "type": "object", "additionalProperties": False, "required": ["data", "next_cursor"],
        "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/IndicatorBar"}},
                       "next_cursor": {"type": ["string", "null"]}},
    },
}


_KEPT = ("Answers are kept until the worker's next checkpoint commit (with a ClickHouse server: for 1 s); "
         "`Cache-Control: no-cache` asks for a fresh one.")


def routes(settings: Settings) -> tuple[Route, ...]:
    timeframes = tuple(tf.name for tf in settings.timeframes)
    return (
        Route("GET", "/v1/candles", "Bars of a symbol on a timeframe, newest first", "candles", candles, "CandlePage",
              params=(symbol_param(), timeframe_param(timeframes), broker_param(), *page_params("bars")), cached=True, queries=False,
              description="OHLC of the mid price per bar (windows [start_ms, end_ms): epoch-aligned below a day, from a "
                          "day on aligned to the broker's trading day), with bid/ask close, spread statistics, tick "
                          "count, volume and indicators. `from`/`to` bound the bar's start. " + _KEPT),
        Route("GET", "/v1/indicators", "Indicators of a symbol's bars on a timeframe, newest first", "candles",
              indicators, "IndicatorPage",
              params=(symbol_param(), timeframe_param(timeframes),
                      NameList("names", "Only these indicators, comma separated (absent: all).",
                               settings.indicators.names),
                      broker_param(), *page_params("bars")), cached=True, queries=False,
              description="Per bar (as /v1/candles), the indicators computed when it closed: from the bar and the "
                          "bars before it (TICKWIRE_INDICATOR_WINDOW_BARS; VWAP from the start of its trading day). "
                          "An indicator in its warm-up is absent from the bar's map. " + _KEPT),
    )
