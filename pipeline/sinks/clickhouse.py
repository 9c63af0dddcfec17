"""A sink that appends rows to one ClickHouse table, column-oriented.

Idempotent because the table deduplicates by identity (see analytics_tables).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from pipeline.analytics import AnalyticsStore
from pipeline.sinks.base import Sink


class AnalyticsTableSink(Sink):
    def __init__(self, store: AnalyticsStore, table: str, column_names: Sequence[str]) -> None:
        self._store = store
        self._table = table
        self._names = tuple(column_names)
        self._columns: list[list[Any]] = [[] for _ in self._names]
        self._pending = 0

    @property
    def name(self) -> str:
        return f"clickhouse.{self._table}"

    @property
    def pending(self) -> int:
        return self._pending

    def add_rows(self, rows: Iterable[Sequence[Any]]) -> None:
        """Buffer rows (each in :attr:`column_names` order)."""
        appends = [column.append for column in self._columns]
        count = 0
        for row in rows:
            for append, value in zip(appends, row):
                append(value)
            count += 1
        self._pending += count

    async def flush(self) -> None:
        if not self._pending:
            return
        await self._store.insert_columns(self._table, self._names, self._columns)
        self._columns = [[] for _ in self._names]
        self._pending = 0
