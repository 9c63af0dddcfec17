"""The analytics role: ClickHouse, in-process (chDB) or a server over HTTP.

One :class:`AnalyticsStore` per process, made of **sessions**. A session is one
connection with a thread of its own: its calls run one at a time, in order, off
the event loop (chDB has no async client), and never wait for another
session's. Several sessions work concurrently on one chDB data directory in one
process (measured with chDB 4.4: an INSERT on one session completes in ~10 ms
while ``SELECT sleep(3)`` runs on another).

- **Writer sessions**, one per stage (:meth:`AnalyticsStore.session`): the
  stage's inserts and the reads its derived computations make of its own
  writes. Nothing else ever runs on them.
- **Read-only sessions**, a pool (:meth:`AnalyticsStore.read`;
  ``TICKWIRE_ANALYTICS_READ_SESSIONS``, two per CPU by default) for the query
  API and operator SQL, whose queries run concurrently with each other and
  with the writers': every query runs with ``readonly=2`` (no writes; on
  chDB the mode sticks to the session, which is why readers are never writers)
  and ``max_execution_time``, so a read past its timeout is cancelled *in the
  store*, not merely abandoned. One more read-only session answers the health
  probe, so a queue of slow reads never makes the store look down.
- Operator writes (``tickwire sql --write``) run on a session opened for that
  one statement and closed after (:meth:`AnalyticsStore.write_once`).

With chDB the process that opens the store owns the data directory; other
processes reach it through the worker's API.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, Callable, Protocol, Sequence, TypeVar, cast

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from pipeline.config import Settings
from pipeline.stores.analytics_tables import TableOptions, migrations

T = TypeVar("T")
Rows = tuple[list[str], list[tuple[Any, ...]]]

#: Seconds the event loop waits beyond a read's ``max_execution_time`` before giving up on it.
_TIMEOUT_GRACE_S = 2.0
#: The health probe's own limit.
PING_TIMEOUT_S = 2.0


def server_credentials(settings: Settings) -> dict[str, Any]:
    """The user, password and CA of a ClickHouse server, when set apart from the DSN (``TICKWIRE_CLICKHOUSE_*``)."""
    credentials: dict[str, Any] = {}
    if settings.clickhouse_username is not None:
        credentials["username"] = settings.clickhouse_username
    if settings.clickhouse_password is not None:
        credentials["password"] = settings.clickhouse_password.get_secret_value()
    if settings.clickhouse_ca_file is not None:
        credentials["ca_cert"] = str(settings.clickhouse_ca_file)
    return credentials


class AnalyticsSession:
    """One connection with its own thread. ``read_only`` sessions refuse writes and bound every query's time."""

    def __init__(self, settings: Settings, name: str, *, read_only: bool = False) -> None:
        self.name = name
        self.database = settings.clickhouse_database
        self.read_only = read_only
        self._settings = settings
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"analytics-{name}")
        self._client: Client | None = None

    def _connect(self) -> Client:
        if self._client is None:
            path = self._settings.chdb_path
            if path is not None:
                path.mkdir(parents=True, exist_ok=True)
                self._client = clickhouse_connect.get_client(interface="chdb", path=str(path))
            else:
                self._client = clickhouse_connect.get_client(dsn=self._settings.clickhouse_dsn, **server_credentials(self._settings))
        return self._client

    async def run(self, fn: Callable[[Client], T]) -> T:
        """Call ``fn(client)`` on this session's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(self._connect()))

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
        if self._settings.chdb_path is not None or not self._settings.clickhouse_async_insert:
            return {}
        return {"async_insert": 1, "wait_for_async_insert": 1}

    async def insert_columns(self, table: str, column_names: Sequence[str], columns: Sequence[Sequence[Any]]) -> None:
        """Insert column-oriented data; raises if the store did not accept all of it."""
        if self.read_only:
            raise PermissionError(f"analytics session {self.name} is read-only")
        settings = self.insert_settings
        await self.run(lambda c: c.insert(f"{self.database}.{table}", list(columns), column_names=list(column_names),
                                          column_oriented=True, settings=settings))

    async def query(self, sql: str, parameters: dict[str, Any] | None = None, *, timeout_s: float | None = None) -> Rows:
        """Run a query (server-side parameters only, ``{name:Type}``). On a read-only session the store refuses
        writes, and with ``timeout_s`` it cancels the query after that long (``TIMEOUT_EXCEEDED``)."""
        settings: dict[str, Any] = {}
        if self.read_only:
            settings["readonly"] = 2  # no writes; settings (the time limit) may still be set per query
        if timeout_s is not None:
            settings["max_execution_time"] = max(1, round(timeout_s))

        def run(client: Client) -> Rows:
            result = client.query(sql, parameters=parameters, settings=settings or None)
            # clickhouse-connect types rows as sequences; it builds them as tuples (zip)
            return list(result.column_names), cast("list[tuple[Any, ...]]", list(result.result_rows))

        if timeout_s is None:
            return await self.run(run)
        async with asyncio.timeout(timeout_s + _TIMEOUT_GRACE_S):
            return await self.run(run)

    async def query_binary(self, sql: str, parameters: dict[str, Any] | None = None) -> bytes:
        """Run a query (server-side parameters only) and return its rows as ``RowBinary`` bytes, undecoded: for
        large reads of fixed-width columns that the caller views as a numpy array (no Python object per value,
        and the session's thread does not hold the GIL while rows arrive)."""
        settings = {"readonly": 2} if self.read_only else None
        return await self.run(lambda client: client.raw_query(sql, parameters=parameters, settings=settings, fmt="RowBinary"))

    async def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        if self.read_only:
            raise PermissionError(f"analytics session {self.name} is read-only")
        await self.run(lambda c: c.command(sql, parameters=parameters))

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await asyncio.get_running_loop().run_in_executor(self._executor, client.close)
        self._executor.shutdown(wait=True)


class Queries(Protocol):
    """What a reader of the analytics store needs: a database name and parameterized queries."""

    database: str

    async def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Rows: ...


class AnalyticsStore:
    """The sessions of one process (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.database = settings.clickhouse_database
        self._settings = settings
        self._writers: dict[str, AnalyticsSession] = {}
        self._readers = [AnalyticsSession(settings, f"read-{i}", read_only=True)
                         for i in range(settings.analytics_read_sessions)]
        self._idle: asyncio.Queue[AnalyticsSession] | None = None
        self._health = AnalyticsSession(settings, "health", read_only=True)

    @property
    def in_process(self) -> bool:
        return self._settings.chdb_path is not None

    def session(self, name: str) -> AnalyticsSession:
        """The writer session ``name`` (one per stage), created on first use."""
        session = self._writers.get(name)
        if session is None:
            session = self._writers[name] = AnalyticsSession(self._settings, name)
        return session

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[AnalyticsSession]:
        """A read-only session of the pool, for one query; waits while all are busy."""
        if self._idle is None:
            self._idle = asyncio.Queue()
            for session in self._readers:
                self._idle.put_nowait(session)
        session = await self._idle.get()
        try:
            yield session
        finally:
            self._idle.put_nowait(session)

    async def read(self, sql: str, parameters: dict[str, Any] | None = None, *, timeout_s: float) -> Rows:
        """A read-only query on a pooled session, cancelled in the store after ``timeout_s``."""
        async with self.reader() as session:
            return await session.query(sql, parameters, timeout_s=timeout_s)

    def reads(self, timeout_s: float) -> PooledReads:
        """The read pool as :class:`Queries`, each query bounded by ``timeout_s`` (API reads)."""
        return PooledReads(self, timeout_s)

    async def write_once(self, sql: str) -> Rows:
        """A statement with write access (operator maintenance) on a session of its own, closed after."""
        session = AnalyticsSession(self._settings, "operator-write")
        try:
            return await session.query(sql)
        finally:
            await session.close()

    async def migrate(self) -> None:
        """Create the database and tables if missing, and apply the retention settings (idempotent)."""
        options = TableOptions(self._settings.clickhouse_cluster, self._settings.ticks_retention_days,
                               self._settings.candles_retention_days, self._settings.signals_retention_days)

        def apply(client: Client) -> None:
            for statement in migrations(self.database, options):
                client.command(statement)

        await self.session("schema").run(apply)

    async def ping(self) -> bool:
        """Whether the store answers a trivial query (on the health probe's own session)."""
        _, rows = await self._health.query("SELECT 1", timeout_s=PING_TIMEOUT_S)
        return rows == [(1,)]

    async def close(self) -> None:
        for session in [*self._writers.values(), *self._readers, self._health]:
            await session.close()


class PooledReads:
    """:class:`Queries` on the read-only pool of a store, each query cancelled in the store after ``timeout_s``."""

    def __init__(self, store: AnalyticsStore, timeout_s: float) -> None:
        self.database = store.database
        self._store = store
        self._timeout_s = timeout_s

    async def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Rows:
        return await self._store.read(sql, parameters, timeout_s=self._timeout_s)
