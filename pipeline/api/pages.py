"""Time-ordered pages (ticks, candles, signals): newest first, a capped ``limit``, and a cursor for more.

Parameters every paged list takes: ``from`` (inclusive) and ``to``
(exclusive), epoch milliseconds; ``limit`` (1..:data:`MAX_LIMIT`, default
:data:`DEFAULT_LIMIT`); ``cursor``, the ``next_cursor`` of the previous page.

Cursor: ``<time_ms>-<skip>``, "rows at or before ``time_ms``, skipping the
first ``skip`` rows at exactly ``time_ms``" in the list's order (newest first,
then a tie-break on the row's identity, so the order is total). It stays
valid while rows are added, except rows added at exactly ``time_ms`` (a tick
that arrives late to that very millisecond) can shift that millisecond's
rows by one. A page shorter than ``limit`` is the last one: its
``next_cursor`` is null. Any well-formed cursor is accepted (a crafted one just
positions the page somewhere else in the caller's own data).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.api.errors import bad_parameter
from pipeline.api.params import Integer, Param, time_param
from pipeline.stores.analytics import Queries

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
_CURSOR = re.compile(r"([0-9]{1,13})-([0-9]{1,9})")


@dataclass(frozen=True)
class Position:
    """Where a page starts: at or before ``time_ms``, after ``skip`` rows at exactly ``time_ms``."""

    time_ms: int
    skip: int

    def __str__(self) -> str:
        return f"{self.time_ms}-{self.skip}"


@dataclass(frozen=True)
class Cursor(Param):
    """The ``cursor`` query parameter."""

    def parse(self, raw: str) -> Position:
        match = _CURSOR.fullmatch(raw)
        if not match:
            raise bad_parameter(self.name, "must be a next_cursor value from a previous page")
        return Position(int(match.group(1)), int(match.group(2)))

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": "^[0-9]{1,13}-[0-9]{1,9}$"}


def page_params(what: str) -> tuple[Param, ...]:
    """``from``, ``to``, ``limit`` and ``cursor`` of a list of ``what``."""
    return (
        time_param("from", f"Only {what} at or after this time."),
        time_param("to", f"Only {what} before this time."),
        Integer("limit", f"At most this many {what}, newest first.", 1, MAX_LIMIT, default=DEFAULT_LIMIT),
        Cursor("cursor", "The next_cursor of the previous page (absent: the newest page)."),
    )


#: The LIMIT clause of a page query; its values come from :meth:`Page.parameters`.
LIMIT_SQL = "LIMIT {page_limit:UInt32} OFFSET {page_skip:UInt32}"


def page_of_each_symbol(order: str, symbols: int) -> str:
    """The ORDER BY (``order``: the list's order) and LIMIT of a query over ``symbols`` symbols answering the same
    page of each, as one query answers concurrent requests (:mod:`pipeline.api.batched_reads`): for several,
    ``ORDER BY symbol, ... LIMIT ... BY symbol``; for one, the plain page, which ClickHouse reads as a top-N
    (measured with chDB: ~3 ms less per query than ``LIMIT BY``)."""
    if symbols == 1:
        return f"ORDER BY {order}\n{LIMIT_SQL}"
    return f"ORDER BY symbol, {order}\nLIMIT {{page_limit:UInt32}} OFFSET {{page_skip:UInt32}} BY symbol"


async def pages_of_symbols(reads: Queries, template: str, where: list[str], parameters: dict[str, Any], order: str,
                           symbols: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """The page of each of ``symbols`` in one query: ``template`` (``{db}``, ``{where}``: the ``where`` conditions
    joined by AND) paged by :func:`page_of_each_symbol`, its rows (the symbol in the second column) as dicts by
    symbol; a symbol without rows has an empty page."""
    sql = (template.replace("{db}", reads.database).replace("{where}", " AND ".join(where))
           + page_of_each_symbol(order, len(symbols)))
    columns, rows = await reads.query(sql, parameters)
    found: dict[str, list[dict[str, Any]]] = {symbol: [] for symbol in symbols}
    for row in rows:
        found[row[1]].append(dict(zip(columns, row)))
    return found


@dataclass(frozen=True)
class Page:
    """One page request: the time bounds and position, as SQL conditions and parameters."""

    start_ms: int | None
    end_ms: int | None
    limit: int
    position: Position | None

    @classmethod
    def of(cls, params: dict[str, Any]) -> Page:
        return cls(params["from"], params["to"], params["limit"], params["cursor"])

    def conditions(self, column: str) -> list[str]:
        """SQL conditions on the DateTime64 ``column`` (server-side parameters only)."""
        found = []
        if self.start_ms is not None:
            found.append(f"{column} >= fromUnixTimestamp64Milli({{page_from:Int64}})")
        if self.end_ms is not None:
            found.append(f"{column} < fromUnixTimestamp64Milli({{page_to:Int64}})")
        if self.position is not None:
            found.append(f"{column} <= fromUnixTimestamp64Milli({{page_at:Int64}})")
        return found

    @property
    def skip(self) -> int:
        """Rows at the position's time to skip (0 without a cursor)."""
        return self.position.skip if self.position else 0

    def parameters(self) -> dict[str, Any]:
        """Values of the parameters that :meth:`conditions`, :data:`LIMIT_SQL` and :func:`page_of_each_symbol` refer to."""
        values: dict[str, Any] = {"page_limit": self.limit, "page_skip": self.skip}
        if self.start_ms is not None:
            values["page_from"] = self.start_ms
        if self.end_ms is not None:
            values["page_to"] = self.end_ms
        if self.position is not None:
            values["page_at"] = self.position.time_ms
        return values

    def next_cursor(self, times_ms: list[int]) -> str | None:
        """The cursor of the page after one whose rows have these times (newest first); None if it was the last."""
        if len(times_ms) < self.limit:
            return None
        last = times_ms[-1]
        skip = sum(1 for t in times_ms if t == last)
        if self.position is not None and self.position.time_ms == last:
            skip += self.position.skip
        return str(Position(last, skip))


class DepthHints:
    """How deep earlier pages of the same query reached, so a repeat can skip older data (per process).

    A page of shape ``shape`` (its tenant, filters and bounds) whose ``depth``-th
    row in list order was at ``time_ms`` is remembered; a later page of that
    shape needing at most ``depth`` rows first asks only for rows at or after
    that time (:meth:`bound`). The answer is always the one the whole range
    would give: everything outside the bound is older than everything inside it,
    so if the bounded query fills the page, those are the page's rows; if it
    does not (rows were deleted, say), the caller asks again without the bound.
    Rows are only ever added, so in practice the bound holds and a repeated page
    reads the newest part of the series only, however long the series is.
    The oldest shapes are forgotten beyond ``max_shapes``.
    """

    def __init__(self, max_shapes: int = 10_000) -> None:
        self._max_shapes = max_shapes
        self._seen: OrderedDict[Hashable, tuple[int, int]] = OrderedDict()  # shape -> (depth, time_ms)

    def bound(self, shape: Hashable, depth: int) -> int | None:
        """A time (epoch ms) before which the first ``depth`` rows of ``shape`` are not, if known."""
        seen = self._seen.get(shape)
        if seen is None or seen[0] < depth:
            return None
        self._seen.move_to_end(shape)
        return seen[1]

    def remember(self, shape: Hashable, depth: int, time_ms: int) -> None:
        """The ``depth``-th row of ``shape`` is at ``time_ms`` (replaces what was known)."""
        self._seen[shape] = (depth, time_ms)
        self._seen.move_to_end(shape)
        if len(self._seen) > self._max_shapes:
            self._seen.popitem(last=False)
