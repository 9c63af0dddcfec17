"""``/v1/ticks/latest`` (the hot cache) and ``/v1/ticks`` (ClickHouse ``ticks FINAL``).

Both read only the caller's tenant: the hot key and every query are built
with the tenant of the key. An unknown symbol or broker gives an empty
``data`` list, as everywhere in the API.

``latest`` reads the cache on every request (through the context's
:class:`~pipeline.api.hot_reads.HotKeyReader`, which coalesces concurrent
reads into one round trip, each issued after its request arrived): its answer
is as fresh as the cache. ``history`` answers are kept in the answer cache
(:mod:`pipeline.api.answer_cache`); computed ones of concurrent requests that
differ only by symbol share one query (:mod:`pipeline.api.batched_reads`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.api.context import ApiContext, store_failed
from pipeline.api.pages import DepthHints, Page, page_params, pages_of_symbols
from pipeline.api.params import broker_param, symbol_param
from pipeline.api.routes import Call, Route
from pipeline.config import Settings
from pipeline.contracts.cache_keys import hot_key
from pipeline.stores.analytics import Queries

_LATEST_FIELDS = ("time_msc", "bid", "ask", "last", "volume", "flags")
#: A series may hold millions of ticks while a page needs a hundred: a repeated page
#: reads only the newest part of it (see DepthHints; the answer is the same).
_depths = DepthHints()

#: A page of each of some symbols (see page_of_each_symbol), as :mod:`pipeline.api.batched_reads` coalesces them.
TICKS_SQL = """
SELECT broker, symbol, toUnixTimestamp64Milli(time) AS time_msc, bid, ask, last, volume, volume_real, flags
FROM {db}.ticks FINAL
WHERE {where}
"""
TICKS_ORDER = "time DESC, broker, bid, ask, last, volume, volume_real, flags"


@dataclass(frozen=True)
class TickPages:
    """What concurrent ``/v1/ticks`` requests share to be answered by one query: all but the symbol."""

    reads: Queries
    tenant: str
    broker: str | None
    page: Page

    def shape(self, symbol: str) -> tuple[Any, ...]:
        """The request for ``symbol``, as :class:`DepthHints` knows it."""
        return (self.tenant, symbol, self.broker, self.page.start_ms, self.page.end_ms, self.page.position)


async def read_latest(ctx: ApiContext, tenant: str, broker: str, symbol: str) -> dict[str, Any] | None:
    """The newest tick of ``tenant``'s series in the hot cache (a ``LatestTick``), None when it has none; read
    through the context's coalescing reader, after this call began. A cache failure raises the 503 ApiError."""
    try:
        values = await ctx.hot_keys.read(hot_key(tenant, broker, symbol), _LATEST_FIELDS)
    except Exception as exc:  # noqa: BLE001 - any cache failure is "unavailable" to the client
        raise store_failed("cache", exc) from None
    present = [value for value in values if value is not None]
    if len(present) < len(values):
        return None
    time_msc, bid, ask, last, volume, flags = present
    return {"broker": broker, "symbol": symbol, "time_msc": int(time_msc), "bid": float(bid),
            "ask": float(ask), "last": float(last), "volume": int(volume), "flags": int(flags)}


async def latest(ctx: ApiContext, call: Call) -> dict[str, Any]:
    tick = await read_latest(ctx, call.tenant, call.params["broker"], call.params["symbol"])
    return {"data": [] if tick is None else [tick]}


async def history(ctx: ApiContext, call: Call) -> dict[str, Any]:
    page = Page.of(call.params)
    pages = TickPages(ctx.reads, call.tenant, call.params["broker"], page)
    async with ctx.using("clickhouse"):
        data = await ctx.batched.read(tick_pages, call.tenant, pages, call.params["symbol"])
    return {"data": data, "next_cursor": page.next_cursor([row["time_msc"] for row in data])}


async def tick_pages(pages: TickPages, symbols: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """The page of each of ``symbols``, in one query (two if a remembered depth did not hold)."""
    depth = pages.page.limit + pages.page.skip
    bounds = {symbol: _depths.bound(pages.shape(symbol), depth) for symbol in symbols}
    found = await _query(pages, bounds)
    short = [symbol for symbol, bound in bounds.items() if bound is not None and len(found[symbol]) < pages.page.limit]
    if short:  # (rarely) a remembered depth did not hold: the whole range of those symbols
        found.update(await _query(pages, dict.fromkeys(short)))
    for symbol, rows in found.items():
        if len(rows) == pages.page.limit:
            _depths.remember(pages.shape(symbol), depth, rows[-1]["time_msc"])
    return found


async def _query(pages: TickPages, bounds: dict[str, int | None]) -> dict[str, list[dict[str, Any]]]:
    """Each symbol's page, from ``bounds[symbol]`` on (epoch ms; None: its whole range)."""
    symbols = list(bounds)
    where = ["tenant = {tenant:String}", "symbol IN {symbols:Array(String)}", *pages.page.conditions("time")]
    parameters: dict[str, Any] = {"tenant": pages.tenant, "symbols": symbols, **pages.page.parameters()}
    if pages.broker is not None:
        where.append("broker = {broker:String}")
        parameters["broker"] = pages.broker
    if any(bound is not None for bound in bounds.values()):
        ranges = []
        for i, (symbol, bound) in enumerate(bounds.items()):
            parameters[f"symbol_{i}"] = symbol
            if bound is None:
                ranges.append(f"symbol = {{symbol_{i}:String}}")
            else:
                parameters[f"bound_{i}"] = bound
                ranges.append(f"(symbol = {{symbol_{i}:String}} AND time >= fromUnixTimestamp64Milli({{bound_{i}:Int64}}))")
        where.append("(" + " OR ".join(ranges) + ")")
    return await pages_of_symbols(pages.reads, TICKS_SQL, where, parameters, TICKS_ORDER, symbols)


_NUMBER = {"type": "number"}
_INTEGER = {"type": "integer"}
_NAME = {"type": "string"}

SCHEMAS: dict[str, dict[str, Any]] = {
    "LatestTick": {
        "type": "object", "additionalProperties": False,
        "required": ["broker", "symbol", "time_msc", "bid", "ask", "last", "volume", "flags"],
        "properties": {"broker": _NAME, "symbol": _NAME, "time_msc": _INTEGER, "bid": _NUMBER, "ask": _NUMBER,
                       "last": _NUMBER, "volume": _INTEGER, "flags": _INTEGER},
    },
    "LatestTicks": {
        "type": "object", "additionalProperties": False, "required": ["data"],
        "properties": {"data": {"type": "array", "maxItems": 1, "items": {"$ref": "#/components/schemas/LatestTick"}}},
    },
    "Tick": {
        "type": "object", "additionalProperties": False,
        "required": ["broker", "symbol", "time_msc", "bid", "ask", "last", "volume", "volume_real", "flags"],
        "properties": {"broker": _NAME, "symbol": _NAME, "time_msc": _INTEGER, "bid": _NUMBER, "ask": _NUMBER,
                       "last": _NUMBER, "volume": _INTEGER, "volume_real": _NUMBER, "flags": _INTEGER},
    },
    "TickPage": {
        "type": "object", "additionalProperties": False, "required": ["data", "next_cursor"],
        "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/Tick"}},
                       "next_cursor": {"type": ["string", "null"]}},
    },
}


def routes(settings: Settings) -> tuple[Route, ...]:
    return (
        Route("GET", "/v1/ticks/latest", "The newest tick of a symbol at a broker", "ticks", latest, "LatestTicks",
              params=(symbol_param(), broker_param("The broker.", required=True)), queries=False,
              description="From the hot cache: the newest tick the pipeline stored for this tenant, broker and symbol "
                          "(kept for TICKWIRE_HOT_KEY_TTL_S after its last tick). `data` has that tick, or nothing."),
        Route("GET", "/v1/ticks", "Stored ticks of a symbol, newest first", "ticks", history, "TickPage",
              params=(symbol_param(), broker_param(), *page_params("ticks")),
              cached=True, queries=False,
              description="From ClickHouse, one row per tick (duplicates from redelivery are never shown). "
                          "Ties within a millisecond are ordered by broker, then the tick's values. Answers are "
                          "kept until the worker's next checkpoint commit (with a ClickHouse server: for 1 s); "
                          "`Cache-Control: no-cache` asks for a fresh one."),
    )
