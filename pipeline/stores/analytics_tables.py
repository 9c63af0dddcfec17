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


def migrations(database: str) -> list[str]:
    return [
        f"""
        CREATE TABLE IF NOT EXISTS {database}.ticks (
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
        ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMM(time)
        PRIMARY KEY (tenant, broker, symbol, time)
        ORDER BY (tenant, broker, symbol, time, bid, ask, last, volume, volume_real, flags)
        """,
        f"""
        CREATE TABLE IF NOT EXISTS {database}.candles (
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
        ENGINE = ReplacingMergeTree(ticks)
        PARTITION BY toYYYYMM(start)
        ORDER BY (tenant, broker, symbol, timeframe, start)
        """,
        f"""
        CREATE TABLE IF NOT EXISTS {database}.signals (
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
        ENGINE = ReplacingMergeTree
        ORDER BY (tenant, id)
        """,
    ]
