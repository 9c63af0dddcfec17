"""``/v1/ticks/latest`` (the hot cache) and ``/v1/ticks`` (ClickHouse ``ticks FINAL``).

Both read only the caller's tenant: the hot key and every query are built
with the tenant of the key. An unknown symbol or broker gives an empty
``data`` list, as everywhere in the API.

``latest`` reads the cache on every request (through the context's
:class:`~pipeline.api.hot_reads.HotKeyReader`, which coalesces concurrent
reads into one round trip, each issued after its request arrived): its answer
is as fresh as the cache. ``history`` answers are kept in the answer cache
(:mod:`pipeline.api.answer_cache`).
"""

from __future__ import annotations

from typing import Any

from pipeline.api.context import ApiContext, store_failed
from pipeline.api.pages import LIMIT_SQL, DepthHints, Page, page_params
from pipeline.api.params import broker_param, symbol_param
from pipeline.api.routes import Call, Route
from pipeline.config import Settings
from pipeline.contracts.cache_keys import hot_key

_LATEST_FIELDS = ("time_msc", "bid", "ask", "last", "volume", "flags")
#: A series may hold millions of ticks while a page needs a hundred: a repeated page
#: reads only the newest part of it (see DepthHints; the answer is the same).
_depths = DepthHints()

TICKS_SQL = """
SELECT broker, symbol, toUnixTimestamp64Milli(time) AS time_msc, bid, ask, last, volume, volume_real, flags
FROM {db}.ticks FINAL
WHERE {where}
ORDER BY time DESC, broker, bid, ask, last, volume, volume_real, flags
""" + LIMIT_SQL


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
    where = ["tenant = {tenant:String}", "symbol = {symbol:String}", *page.conditions("time")]
    parameters = {"tenant": call.tenant, "symbol": call.params["symbol"], **page.parameters()}
    if call.params["broker"] is not None:
        where.append("broker = {broker:String}")
        parameters["broker"] = call.params["broker"]
    shape = (call.tenant, call.params["symbol"], call.params["broker"], page.start_ms, page.end_ms, page.position)
    depth = page.limit + parameters["page_skip"]
    bound = _depths.bound(shape, depth)
    rows: list[tuple[Any, ...]] = []
    columns: list[str] = []
    if bound is not None:
        bounded = [*where, "time >= fromUnixTimestamp64Milli({bound:Int64})"]
        columns, rows = await _query(ctx, bounded, {**parameters, "bound": bound})
    if len(rows) < page.limit:  # no bound known, or (rarely) it did not hold: the whole range
        columns, rows = await _query(ctx, where, parameters)
    if len(rows) == page.limit:
        _depths.remember(shape, depth, rows[-1][2])
    data = [dict(zip(columns, row)) for row in rows]
    return {"data": data, "next_cursor": page.next_cursor([row[2] for row in rows])}


async def _query(ctx: ApiContext, where: list[str], parameters: dict[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
    sql = TICKS_SQL.replace("{db}", ctx.reads.database).replace("{where}", " AND ".join(where))
    async with ctx.using("clickhouse"):
        return await ctx.reads.query(sql, parameters)


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
              cached=True,
              description="From ClickHouse, one row per tick (duplicates from redelivery are never shown). "
                          "Ties within a millisecond are ordered by broker, then the tick's values. Answers are "
                          "kept until the worker's next checkpoint commit (with a ClickHouse server: for 1 s); "
                          "`Cache-Control: no-cache` asks for a fresh one."),
    )
