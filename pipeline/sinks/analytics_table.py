"""A sink that appends rows to one ClickHouse table, column-oriented.

Idempotent because the table deduplicates by identity (see
:mod:`pipeline.stores.analytics_tables`). Each row remembers the input record
it came from, so rows the store refuses (a constraint, a value it cannot
take) are dead-lettered one by one while the others are written.
"""

from __future__ import annotations

from typing import Any, Sequence

from pipeline.core.codec import RawRecord
from pipeline.sinks.base import ItemSink
from pipeline.stores.analytics import AnalyticsSession


class AnalyticsTableSink(ItemSink[int]):
    """Items are row numbers of the buffer (``range`` slices give contiguous rows)."""

    def __init__(self, session: AnalyticsSession, table: str, column_names: Sequence[str]) -> None:
        self._session = session
        self._table = table
        self._names = tuple(column_names)
        self._columns: list[list[Any]] = [[] for _ in self._names]
        self._origins: list[RawRecord] = []

    @property
    def name(self) -> str:
        return f"clickhouse.{self._table}"

    @property
    def pending(self) -> int:
        return len(self._origins)

    def add_columns(self, columns: Sequence[Sequence[Any]], origins: Sequence[RawRecord]) -> None:
        """Buffer rows given column-wise, in the sink's column order, with the record of each row."""
        if len(columns) != len(self._columns):
            raise ValueError(f"{self.name}: {len(columns)} columns given, {len(self._columns)} expected")
        if any(len(column) != len(origins) for column in columns):
            raise ValueError(f"{self.name}: every column needs one value per record ({len(origins)})")
        for buffered, added in zip(self._columns, columns):
            buffered.extend(added)
        self._origins.extend(origins)

    def _items(self) -> range:
        return range(len(self._origins))

    async def _write(self, items: Sequence[int]) -> None:
        assert isinstance(items, range)
        lo, hi = items.start, items.stop
        whole = lo == 0 and hi == len(self._origins)
        columns = self._columns if whole else [column[lo:hi] for column in self._columns]
        await self._session.insert_columns(self._table, self._names, columns)

    def _origin(self, item: int) -> RawRecord:
        return self._origins[item]

    def _clear(self) -> None:
        self._columns = [[] for _ in self._names]
        self._origins = []
