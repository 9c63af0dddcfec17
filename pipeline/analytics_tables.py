"""ClickHouse tables of tickwire, as idempotent DDL valid on chDB and a server.

Identity and deduplication: each table is a ReplacingMergeTree whose sorting
key is the row's identity, so a row written twice (redelivery, replay) is one
row for any query that reads with ``FINAL`` (all of tickwire's queries do).

``ticks`` identity: tenant, broker, symbol, time, bid, ask, last, volume,
volume_real, flags (the whole MqlTick): two byte-identical ticks of one symbol
in the same millisecond are one tick.
"""

from __future__ import annotations

TICKS_COLUMNS = (
    "tenant", "broker", "symbol", "time", "bid", "ask", "last",
    "volume", "volume_real", "flags", "spread", "src_partition", "src_offset",
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
    ]
