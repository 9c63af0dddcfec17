"""``/v1/symbols``: the series (symbol at a broker) the caller's tenant has ticks of, by name, in pages.

From ClickHouse ``ticks`` (its sort key begins with the tenant, so only the
caller's part is read), with the time of each series' newest tick from the hot
cache (null once the hot key expired). Only the caller's tenant: another
tenant's series never appear, and a tenant with no ticks gets an empty list.

Paging is by name: ``limit`` series (1..:data:`MAX_LIMIT`, default
:data:`DEFAULT_LIMIT`) sorted by symbol, then broker; ``next_cursor``
(``SYMBOL:broker`` of the page's last series, null on the last page) asks for
the series after it. Series added meanwhile appear on the page their name
sorts to.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from pipeline.api.context import ApiContext, store_failed
from pipeline.api.errors import bad_parameter
from pipeline.api.params import Integer, Param
from pipeline.api.routes import Call, Route
from pipeline.config import Settings
from pipeline.contracts.cache_keys import hot_key
from pipeline.contracts.schemas import BROKER, SYMBOL, NamePattern

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100

SYMBOLS_SQL = """
SELECT symbol, broker
FROM {db}.ticks
WHERE {where}
GROUP BY symbol, broker
ORDER BY symbol, broker
LIMIT {limit:UInt32}
"""


@dataclass(frozen=True)
class SeriesCursor(Param):
    """``SYMBOL:broker``: the last series of the previous page (names never hold ``:``)."""

    def parse(self, raw: str) -> tuple[str, str]:
        symbol, separator, broker = raw.partition(":")
        try:
            if not separator:
                raise ValueError(raw)
            SYMBOL.check(self.name, symbol)
            BROKER.check(self.name, broker)
        except ValueError:
            raise bad_parameter(self.name, "must be a next_cursor value from a previous page") from None
        return symbol, broker

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": f"^{_bare(SYMBOL)}:{_bare(BROKER)}$"}


def _bare(pattern: NamePattern) -> str:
    """A name pattern's regex without its anchors."""
    return pattern.regex.removeprefix("^").removesuffix(r"$(?!\n)")


async def symbols(ctx: ApiContext, call: Call) -> dict[str, Any]:
    where = ["tenant = {tenant:String}"]
    parameters: dict[str, Any] = {"tenant": call.tenant, "limit": call.params["limit"]}
    if call.params["cursor"] is not None:
        where.append("(symbol, broker) > ({after_symbol:String}, {after_broker:String})")
        parameters["after_symbol"], parameters["after_broker"] = call.params["cursor"]
    sql = SYMBOLS_SQL.replace("{db}", ctx.reads.database).replace("{where}", " AND ".join(where))
    async with ctx.using("clickhouse"):
        _, rows = await ctx.reads.query(sql, parameters)
    try:
        newest = await asyncio.gather(*(ctx.hot_keys.read(hot_key(call.tenant, broker, symbol), ("time_msc",))
                                        for symbol, broker in rows))
    except Exception as exc:  # noqa: BLE001 - any cache failure is "unavailable" to the client
        raise store_failed("cache", exc) from None
    data = [{"symbol": symbol, "broker": broker, "last_tick_ms": None if time_msc[0] is None else int(time_msc[0])}
            for (symbol, broker), time_msc in zip(rows, newest)]
    last = data[-1] if len(data) == call.params["limit"] else None
    return {"data": data, "next_cursor": None if last is None else f"{last['symbol']}:{last['broker']}"}


SCHEMAS: dict[str, dict[str, Any]] = {
    "Series": {
        "type": "object", "additionalProperties": False, "required": ["symbol", "broker", "last_tick_ms"],
        "properties": {
            "symbol": {"type": "string"}, "broker": {"type": "string"},
            "last_tick_ms": {"type": ["integer", "null"],
                             "description": "Time of the series' newest tick in the hot cache (epoch ms); null "
                                            "once its hot key expired (TICKWIRE_HOT_KEY_TTL_S after its last tick)."},
        },
    },
    "SeriesPage": {
        "type": "object", "additionalProperties": False, "required": ["data", "next_cursor"],
        "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/Series"}},
                       "next_cursor": {"type": ["string", "null"]}},
    },
}


def routes(settings: Settings) -> tuple[Route, ...]:
    return (
        Route("GET", "/v1/symbols", "The series (symbol at a broker) this tenant has ticks of", "ticks", symbols,
              "SeriesPage",
              params=(Integer("limit", "At most this many series.", 1, MAX_LIMIT, default=DEFAULT_LIMIT),
                      SeriesCursor("cursor", "The next_cursor of the previous page (absent: the first page).")),
              cached=True,
              description="Sorted by symbol, then broker, from the stored ticks, with the time of each series' "
                          "newest tick from the hot cache. Answers are kept until the worker's next checkpoint "
                          "commit (with a ClickHouse server: for 1 s); `Cache-Control: no-cache` asks for a fresh one."),
    )
