"""ClickHouse tables of tickwire, as idempotent DDL valid on chDB and a server.

Identity and deduplication: each table is a ReplacingMergeTree whose sorting
key is the row's identity, so a row written twice (redelivery, replay) is one
row for any query that reads with ``FINAL`` (all of tickwire's queries do).

``candles`` identity: tenant, broker, symbol, timeframe, start; the version
is ``ticks``, so an amended bar (more ticks) wins over the bar it amends.

``signals`` identity: tenant, id (a resent signal is the same signal).

``ticks`` identity: tenant, broker, symbol, time, bid, ask, last, volume,
volume_real, flags (the whole MqlTick): two byte-identical ticks of one symbol
in the same millisecond are one tick.
"""

from __future__ import annotations

from dataclasses import dataclass

TICKS_COLUMNS = (
    "tenant", "broker", "symbol", "time", "bid", "ask", "last",
    "volume", "volume_real", "flags", "spread", "src_partition", "src_offset",
)


CANDLES_COLUMNS = (
    "tenant", "broker", "symbol", "timeframe", "start", "end", "open", "high", "low", "close",
    "bid_close", "ask_close", "spread_avg", "spread_min", "spread_max", "ticks", "volume", "volume_real",
)


SIGNALS_COLUMNS = (
    "tenant", "id", "broker", "strategy", "symbol", "time", "action", "confidence", "price", "sl", "tp", "reason",
    "src_partition", "src_offset",
)


@dataclass(frozen=True)
class TableOptions:
    """How the tables are made: on a cluster (replicated engines, ``ON CLUSTER`` DDL) and how long rows live.

    ``cluster``: ``TICKWIRE_CLICKHOUSE_CLUSTER`` (None: one server, or chDB). Replicated tables use the
    server's ``{shard}`` and ``{replica}`` macros. ``*_retention_days``: rows older than that are dropped by
    ClickHouse (a ``TTL`` on the row's time); None keeps them.
    """

    cluster: str | None = None
    ticks_retention_days: int | None = None
    candles_retention_days: int | None = None
    signals_retention_days: int | None = None


def _on_cluster(options: TableOptions) -> str:
    return f" ON CLUSTER '{options.cluster}'" if options.cluster else ""


def _engine(options: TableOptions, table: str, version: str = "") -> str:
    if not options.cluster:
        return f"ReplacingMergeTree{f'({version})' if version else ''}"
    arguments = f"'/clickhouse/tables/{{shard}}/{{database}}/{table}', '{{replica}}'" + (f", {version}" if version else "")
    return f"ReplicatedReplacingMergeTree({arguments})"


def _ttl(column: str, days: int | None) -> str:
    return f"TTL toDateTime({column}) + INTERVAL {int(days)} DAY" if days else ""


def migrations(database: str, options: TableOptions = TableOptions()) -> list[str]:
    """The DDL, in order: idempotent (``IF NOT EXISTS``), then each retention as a ``MODIFY TTL`` (cheap: existing
    parts are not rewritten at once) so that a changed setting applies to existing tables too."""
    on = _on_cluster(options)
    statements = [
        f"CREATE DATABASE IF NOT EXISTS {database}{on}",
        f"""
        CREATE TABLE IF NOT EXISTS {database}.ticks{on} (
            tenant LowCardinality(String),
            broker LowCardinality(String),
            symbol LowCardinality(String),
            time DateTime64(3, 'UTC'),
            bid Float64,
            ask Float64,
            last Float64,
            volume UInt64,
            volume_real Float64,
            flags UInt8,
            spread Float64,
            src_partition UInt32,
            src_offset UInt64
        )
        ENGINE = {_engine(options, 'ticks')}
        PARTITION BY toYYYYMM(time)
        PRIMARY KEY (tenant, broker, symbol, time)
        ORDER BY (tenant, broker, symbol, time, bid, ask, last, volume, volume_real, flags)
        {_ttl('time', options.ticks_retention_days)}
        """,
        f"""
        CREATE TABLE IF NOT EXISTS {database}.candles{on} (
            tenant LowCardinality(String),
            broker LowCardinality(String),
            symbol LowCardinality(String),
            timeframe LowCardinality(String),
            start DateTime64(3, 'UTC'),
            end DateTime64(3, 'UTC'),
            open Float64,
            high Float64,
            low Float64,
            close Float64,
            bid_close Float64,
            ask_close Float64,
            spread_avg Float64,
            spread_min Float64,
            spread_max Float64,
            ticks UInt32,
            volume UInt64,
            volume_real Float64
        )
        ENGINE = {_engine(options, 'candles', 'ticks')}
        PARTITION BY toYYYYMM(start)
        ORDER BY (tenant, broker, symbol, timeframe, start)
        {_ttl('start', options.candles_retention_days)}
        """,
        f"""
        CREATE TABLE IF NOT EXISTS {database}.signals{on} (
            tenant LowCardinality(String),
            id String,
            broker LowCardinality(String),
            strategy LowCardinality(String),
            symbol LowCardinality(String),
            time DateTime64(3, 'UTC'),
            action LowCardinality(String),
            confidence Float64,
            price Nullable(Float64),
            sl Nullable(Float64),
            tp Nullable(Float64),
            reason Nullable(String),
            src_partition UInt32,
            src_offset UInt64
        )
        ENGINE = {_engine(options, 'signals')}
        ORDER BY (tenant, id)
        {_ttl('time', options.signals_retention_days)}
        """,
    ]
    for table, column in (("ticks", "time"), ("candles", "start"), ("signals", "time")):
        days = getattr(options, f"{table}_retention_days")
        if days:
            statements.append(f"ALTER TABLE {database}.{table}{on} MODIFY {_ttl(column, days)} "
                              "SETTINGS materialize_ttl_after_modify = 0")
    return statements
