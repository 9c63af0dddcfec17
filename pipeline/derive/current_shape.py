"""The current shape of a series: the embedding of its last ``WINDOW_BARS + 1`` closed bars on a timeframe.

One definition for everything that asks "what does this symbol look like
now": the signal enricher (for each signal's series) and
``/v1/patterns/similar`` (for a symbol, at one broker or whichever has the
newest bar). Both search the vector role with it for earlier windows ending
before :attr:`Shape.window_end_ms`.

Contracts:
- Bars come from ``candles FINAL`` (one row per bar, amendments applied),
  the newest ``WINDOW_BARS + 1`` per (tenant, broker, symbol), embedded with
  :func:`pipeline.derive.embedding.embed` exactly as the pattern builder embeds
  stored windows.
- A series with fewer bars has no current shape (it is absent from the
  answer); one whose window is flat has a shape with ``vector`` None (nothing
  is similar to no movement).
- Only the tenants named in the request are read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from pipeline.derive.embedding import WINDOW_BARS, embed
from pipeline.stores.analytics import Queries
from pipeline.stores.series_filter import series_filter

#: (tenant, broker, symbol)
Series = tuple[str, str, str]

_BARS_SQL = """
SELECT tenant, broker, symbol, toUnixTimestamp64Milli(end) AS end_ms, high, low, close, spread_avg
FROM {db}.candles FINAL
WHERE timeframe = {tf:String} AND {where}
ORDER BY tenant, broker, symbol, start DESC
LIMIT {n:UInt32} BY tenant, broker, symbol
"""


@dataclass(frozen=True)
class Shape:
    """A series' current shape: its window's end (the end of its newest bar, epoch ms) and embedding."""

    series: Series
    window_end_ms: int
    #: None for a flat window
    vector: tuple[float, ...] | None


async def shapes_of(store: Queries, timeframe: str, series: Collection[Series]) -> dict[Series, Shape]:
    """The current shape of each of ``series`` that has one."""
    if not series:
        return {}
    return await _shapes(store, timeframe, *series_filter(series))


async def shapes_of_symbols(store: Queries, timeframe: str, tenant: str, symbols: Collection[str],
                            broker: str | None = None) -> dict[Series, Shape]:
    """The current shape of each of ``symbols`` of ``tenant`` at each broker (or only ``broker``) that has one, in
    one query."""
    where = "tenant = {tenant:String} AND symbol IN {symbols:Array(String)}"
    parameters: dict[str, Any] = {"tenant": tenant, "symbols": sorted(symbols)}
    if broker is not None:
        where += " AND broker = {broker:String}"
        parameters["broker"] = broker
    return await _shapes(store, timeframe, where, parameters)


async def _shapes(store: Queries, timeframe: str, where: str, parameters: dict[str, Any]) -> dict[Series, Shape]:
    sql = _BARS_SQL.replace("{db}", store.database).replace("{where}", where)
    _, rows = await store.query(sql, {**parameters, "tf": timeframe, "n": WINDOW_BARS + 1})
    bars: dict[Series, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        bars[row[0], row[1], row[2]].append(row[3:])  # newest first: end_ms, high, low, close, spread_avg
    shapes = {}
    for series, recent in bars.items():
        if len(recent) < WINDOW_BARS + 1:
            continue
        recent.reverse()
        embedded = embed([b[3] for b in recent], [b[1] for b in recent], [b[2] for b in recent], [b[4] for b in recent])
        shapes[series] = Shape(series, int(recent[-1][0]), None if embedded is None else embedded[0])
    return shapes
