"""ClickHouse tables of tickwire, as idempotent DDL valid on chDB and a server.

Identity and deduplication: each table is a ReplacingMergeTree whose sorting
key is the row's identity, so a row written twice (redelivery, replay) is one
row for any query that reads with ``FINAL`` (all of tickwire's queries do).

``candles`` identity: tenant, broker, symbol, timeframe, start; the version
is ``ticks``, so an amended bar (more ticks) wins over the bar it amends (and
of two rows with as many ticks, the one inserted last: a bar recomputed because
a bar before it was amended). ``indicators`` holds the bar's indicators by name
(pipeline.contracts.indicators; one not defined yet is absent) and
``vwap_sums`` the running sums of its trading day that the next bar's VWAP
continues (pipeline.derive.indicators.VwapSums); both are added to existing
tables by an ``ADD COLUMN IF NOT EXISTS`` (older rows: empty).

``signals`` identity: tenant, id (a resent signal is the same signal).

``signal_outcomes`` identity: tenant, signal_id, horizon_ms (pipeline.derive.outcomes); the version is
``ticks``, so an outcome recomputed with more ticks (a late tick that amended a bar) wins. Its rows live as
long as the signals (``TICKWIRE_SIGNALS_RETENTION_DAYS``, on the signal's time).

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
    "bid_close", "ask_close", "spread_avg", "spread_min", "spread_max", "ticks", "volume", "volume_real", "indicators",
    "vwap_sums",
)


SIGNALS_COLUMNS = (
    "tenant", "id", "broker", "strategy", "symbol", "time", "action", "confidence", "price", "sl", "tp", "reason",
    "src_partition", "src_offset",
)


SIGNAL_OUTCOMES_COLUMNS = (
    "tenant", "signal_id", "horizon_ms", "horizon", "broker", "strategy", "symbol", "action", "signal_time",
    "horizon_end", "entry", "entry_source", "tp", "sl", "exit_mid", "exit_time", "move", "directed_return",
    "tp_hit_time", "sl_hit_time", "first_hit", "first_hit_time", "mae", "ticks",
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
    """The DDL, in order: idempotent (``IF NOT EXISTS``), then the columns added since a table was first made
    (``ADD COLUMN IF NOT EXISTS``), then each retention as a ``MODIFY TTL`` (cheap: existing parts are not
    rewritten at once) so that a changed setting applies to existing tables too."""
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
            volume_real Float64,
            indicators Map(String, Float64),
            vwap_sums Array(Float64)
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
        f"""
        CREATE TABLE IF NOT EXISTS {database}.signal_outcomes{on} (
            tenant LowCardinality(String),
            signal_id String,
            horizon_ms UInt64,
            horizon LowCardinality(String),
            broker LowCardinality(String),
            strategy LowCardinality(String),
            symbol LowCardinality(String),
            action LowCardinality(String),
            signal_time DateTime64(3, 'UTC'),
            horizon_end DateTime64(3, 'UTC'),
            entry Nullable(Float64),
            entry_source LowCardinality(Nullable(String)),
            tp Nullable(Float64),
            sl Nullable(Float64),
            exit_mid Nullable(Float64),
            exit_time Nullable(DateTime64(3, 'UTC')),
            move Nullable(Float64),
            directed_return Nullable(Float64),
            tp_hit_time Nullable(DateTime64(3, 'UTC')),
            sl_hit_time Nullable(DateTime64(3, 'UTC')),
            first_hit LowCardinality(Nullable(String)),
            first_hit_time Nullable(DateTime64(3, 'UTC')),
            mae Nullable(Float64),
            ticks UInt64
        )
        ENGINE = {_engine(options, 'signal_outcomes', 'ticks')}
        ORDER BY (tenant, signal_id, horizon_ms)
        {_ttl('signal_time', options.signals_retention_days)}
        """,
        f"ALTER TABLE {database}.candles{on} ADD COLUMN IF NOT EXISTS indicators Map(String, Float64)",
        f"ALTER TABLE {database}.candles{on} ADD COLUMN IF NOT EXISTS vwap_sums Array(Float64)",
    ]
    for table, column, kept in (("ticks", "time", "ticks"), ("candles", "start", "candles"), ("signals", "time", "signals"),
                                ("signal_outcomes", "signal_time", "signals")):
        days = getattr(options, f"{kept}_retention_days")
        if days:
            statements.append(f"ALTER TABLE {database}.{table}{on} MODIFY {_ttl(column, days)} "
                              "SETTINGS materialize_ttl_after_modify = 0")
    return statements
