"""The sink work every ingest contender does, written once so all do exactly the same.

- ClickHouse: the rows go into ``tickwire.ticks`` created by tickwire's own DDL
  (``pipeline.stores.analytics_tables``: ReplacingMergeTree, the same 13 columns, the
  same types) in a fresh chDB directory, as one column-oriented insert.
- Cache: the newest tick per key is written to its hot key with tickwire's own
  newest-wins Lua script (``pipeline.sinks.hotcache.NEWEST_WINS``), 500 keys
  per call, pipelined, as tickwire's hot-key sink does.

Rows arrive as decoded ``tick.v1`` dicts (orjson) with their source partition
and offset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import clickhouse_connect
import redis
import redis.asyncio
from clickhouse_connect.driver.client import Client

from pipeline.contracts.cache_keys import hot_key
from pipeline.sinks.hotcache import KEYS_PER_CALL, NEWEST_WINS
from pipeline.stores.analytics_tables import TICKS_COLUMNS, migrations

DATABASE = "tickwire"
HOT_KEY_TTL_MS = 86_400_000

#: key -> (time_msc, offset, bid, ask, last, volume, flags)
Newest = dict[str, tuple[int, int, float, float, float, int, int]]


def open_analytics(path: Path) -> Client:
    """A chDB client on a fresh data directory with tickwire's tables."""
    path.mkdir(parents=True, exist_ok=True)
    client = clickhouse_connect.get_client(interface="chdb", path=str(path))
    client.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    for statement in migrations(DATABASE):
        client.command(statement)
    return client


def tick_columns(values: Sequence[dict[str, Any]], partitions: Sequence[int], offsets: Sequence[int]) -> list[list[Any]]:
    """The ``ticks`` columns (``TICKS_COLUMNS`` order) of decoded ticks."""
    bids = [v["bid"] for v in values]
    asks = [v["ask"] for v in values]
    return [
        [v["tenant"] for v in values], [v["broker"] for v in values], [v["symbol"] for v in values],
        [int(v["time_msc"]) for v in values], bids, asks, [v.get("last", 0.0) for v in values],
        [int(v.get("volume", 0)) for v in values], [v.get("volume_real", 0.0) for v in values],
        [int(v.get("flags", 0)) for v in values], [a - b for a, b in zip(asks, bids)], list(partitions), list(offsets),
    ]


def insert_ticks(client: Client, columns: list[list[Any]]) -> None:
    client.insert(f"{DATABASE}.ticks", columns, column_names=list(TICKS_COLUMNS), column_oriented=True)


def stored_ticks(client: Client) -> int:
    """Rows a query sees in ``ticks`` (``FINAL``: one per identity)."""
    return int(client.query(f"SELECT count() FROM {DATABASE}.ticks FINAL").result_rows[0][0])


def newest_per_key(values: Sequence[dict[str, Any]], offsets: Sequence[int], into: Newest | None = None) -> Newest:
    """The newest tick per hot key (greater time, then greater offset), as the hot-key sink buffers them."""
    newest: Newest = {} if into is None else into
    for v, offset in zip(values, offsets):
        key = hot_key(v["tenant"], v["broker"], v["symbol"])
        t = int(v["time_msc"])
        current = newest.get(key)
        if current is None or t > current[0] or (t == current[0] and offset > current[1]):
            newest[key] = (t, offset, v["bid"], v["ask"], v.get("last", 0.0), int(v.get("volume", 0)), int(v.get("flags", 0)))
    return newest


def script_calls(newest: Newest) -> list[tuple[list[str], list[Any]]]:
    """(keys, args) of each call of the newest-wins script for ``newest``."""
    items = list(newest.items())
    calls = []
    for start in range(0, len(items), KEYS_PER_CALL):
        chunk = items[start:start + KEYS_PER_CALL]
        args: list[Any] = [HOT_KEY_TTL_MS]
        for _key, values in chunk:
            args.extend(repr(v) if isinstance(v, float) else v for v in values)
        calls.append(([k for k, _ in chunk], args))
    return calls


def write_hot_keys(client: redis.Redis, newest: Newest) -> None:
    """Write ``newest`` with the newest-wins script, pipelined (blocking client)."""
    script = client.register_script(NEWEST_WINS)
    with client.pipeline(transaction=False) as pipe:
        for keys, args in script_calls(newest):
            script(keys=keys, args=args, client=pipe)
        pipe.execute()


async def write_hot_keys_async(client: redis.asyncio.Redis, newest: Newest) -> None:
    """Write ``newest`` with the newest-wins script, pipelined (asyncio client)."""
    script = client.register_script(NEWEST_WINS)
    async with client.pipeline(transaction=False) as pipe:
        for keys, args in script_calls(newest):
            await script(keys=keys, args=args, client=pipe)
        await pipe.execute()
