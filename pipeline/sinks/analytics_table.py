"""A sink that appends rows to one ClickHouse table, column-oriented.

Idempotent because the table deduplicates by identity (see analytics_tables).
"""

from __future__ import annotations

from typing import Any, Sequence

from pipeline.sinks.base import Sink
from pipeline.stores.analytics import AnalyticsStore


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

    def add_columns(self, columns: Sequence[Sequence[Any]]) -> None:
        """Buffer rows given column-wise, in the sink's column order (all the same length)."""
        if len(columns) != len(self._columns):
            raise ValueError(f"{self.name}: {len(columns)} columns given, {len(self._columns)} expected")
        for buffered, added in zip(self._columns, columns):
            buffered.extend(added)
        self._pending += len(columns[0]) if columns else 0

    async def flush(self) -> None:
        if not self._pending:
            return
        await self._store.insert_columns(self._table, self._names, self._columns)
        self._columns = [[] for _ in self._names]
        self._pending = 0
