"""The analytics role: ClickHouse, in-process (chDB) or a server over HTTP.

One :class:`AnalyticsStore` per process. All calls go through a single worker
thread: chDB has no async client and allows one engine per process, and the
event loop must never block on it. With chDB the process that opens the store
owns the data directory; other processes reach it through the worker's API.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from pipeline.config import Settings
from pipeline.stores.analytics_tables import migrations


class AnalyticsStore:
    def __init__(self, settings: Settings) -> None:
        self.database = settings.clickhouse_database
        self._settings = settings
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analytics")
        self._client: Client | None = None

    @property
    def in_process(self) -> bool:
        return self._settings.chdb_path is not None

    def _connect(self) -> Client:
        if self._client is None:
            path = self._settings.chdb_path
            if path is not None:
                path.mkdir(parents=True, exist_ok=True)
                self._client = clickhouse_connect.get_client(interface="chdb", path=str(path))
            else:
                self._client = clickhouse_connect.get_client(dsn=self._settings.clickhouse_dsn)
        return self._client

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(self._connect(), *args, **kwargs))

    async def migrate(self) -> None:
        """Create the database and tables if missing (idempotent)."""

        def apply(client: Client) -> None:
            client.command(f"CREATE DATABASE IF NOT EXISTS {self.database}")
            for statement in migrations(self.database):
                client.command(statement)

        await self._run(apply)

    @property
    def insert_settings(self) -> dict[str, int]:
        """Settings of every insert. On a server (with ``TICKWIRE_CLICKHOUSE_ASYNC_INSERT``): async inserts.

        Each worker inserts once per table per checkpoint; with many workers that is
        many small parts. ``async_insert`` lets the server coalesce them into few
        parts, and ``wait_for_async_insert=1`` makes the insert return only once the
        rows are written into a part, so "flushed" still means durable and visible
        to the queries that derived streams run right after (never fire-and-forget).
        chDB is one in-process writer: plain inserts.
        """
        if self.in_process or not self._settings.clickhouse_async_insert:
            return {}
        return {"async_insert": 1, "wait_for_async_insert": 1}

    async def insert_columns(self, table: str, column_names: Sequence[str], columns: Sequence[Sequence[Any]]) -> None:
        """Insert column-oriented data; raises if the store did not accept all of it."""
        settings = self.insert_settings
        await self._run(
            lambda c: c.insert(f"{self.database}.{table}", list(columns), column_names=list(column_names),
                               column_oriented=True, settings=settings)
        )

    async def query(
        self, sql: str, parameters: dict[str, Any] | None = None, *, readonly: bool = True
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run a query (server-side parameters only, ``{name:Type}``); read-only by default."""
        settings = {"readonly": 1} if readonly else None

        def run(client: Client) -> tuple[list[str], list[tuple[Any, ...]]]:
            result = client.query(sql, parameters=parameters, settings=settings)
            return list(result.column_names), list(result.result_rows)

        return await self._run(run)

    async def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        await self._run(lambda c: c.command(sql, parameters=parameters))

    async def ping(self) -> bool:
        return bool(await self._run(lambda c: c.ping()))

    async def close(self) -> None:
        if self._client is not None:
            await self._run(lambda c: c.close())
        self._executor.shutdown(wait=True)
