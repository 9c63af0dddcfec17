"""``tickwire sql``: where a read-only query runs.

- ClickHouse server (http/https DSN): directly.
- chDB: through the running worker that owns the data directory (its
  ``/internal/sql`` route, with the operator token from the state dir); when
  no worker answers, by opening the data directory in this process.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from typing import Iterator

import orjson

from pipeline.config import Settings
from pipeline.core.operator_token import SQL_ROUTE, read_token


class SqlError(RuntimeError):
    """The query failed or no process could run it; the message says why."""


def worker_query(settings: Settings, query: str, *, write: bool = False) -> list[str] | None:
    """Lines from the worker, or None when no worker holds the store."""
    token = read_token(settings.state_dir)
    if token is None:
        return None
    request = urllib.request.Request(
        settings.api_url + SQL_ROUTE + ("?write=1" if write else ""),
        data=query.encode(),
        headers={"Authorization": f"Bearer {token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            body = response.read().decode()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        try:
            detail = orjson.loads(detail)["error"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            pass
        raise SqlError(f"query failed: {detail}") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    return body.splitlines() if body else []


async def _direct(settings: Settings, query: str, write: bool) -> list[str]:
    from pipeline.stores.analytics import AnalyticsStore

    store = AnalyticsStore(settings)
    try:
        if write:
            columns, rows = await store.write_once(query)
        else:
            columns, rows = await store.read(query, timeout_s=settings.sql_timeout_s)
    except Exception as exc:  # noqa: BLE001 - the store's message is the answer
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "Cannot lock file" in str(exc) or "EmbeddedServer" in str(exc):
            raise SqlError(
                f"the chDB data at {settings.chdb_path} is owned by another process and no worker answered at {settings.api_url}"
            ) from None
        raise SqlError(f"query failed: {first}") from None
    finally:
        await store.close()
    return [orjson.dumps(dict(zip(columns, row)), default=str).decode() for row in rows]


def run_sql(settings: Settings, query: str, *, write: bool = False) -> Iterator[str]:
    """JSON lines, one per row. Read-only unless ``write``."""
    if settings.chdb_path is not None:
        lines = worker_query(settings, query, write=write)
        if lines is not None:
            yield from lines
            return
    yield from asyncio.run(_direct(settings, query, write))
