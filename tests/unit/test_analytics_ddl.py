"""The analytics DDL on a cluster (ON CLUSTER, replicated engines) and with retention (TTL): as generated.

The single-server DDL runs live on chDB in tests/conformance/conformance_analytics.py (with and without TTL).
"""

from __future__ import annotations

import re

import pytest

from pipeline.config import SettingsError, load_settings
from pipeline.stores.analytics_tables import TableOptions, migrations


def test_one_server_has_plain_engines_and_no_ttl_by_default() -> None:
    ddl = "\n".join(migrations("tw"))
    assert "ON CLUSTER" not in ddl and "Replicated" not in ddl and "TTL" not in ddl
    assert ddl.count("ENGINE = ReplacingMergeTree") == 4 and "ReplacingMergeTree(ticks)" in ddl


def test_a_cluster_gets_on_cluster_ddl_and_replicated_engines() -> None:
    statements = migrations("tw", TableOptions(cluster="prod"))
    assert statements[0] == "CREATE DATABASE IF NOT EXISTS tw ON CLUSTER 'prod'"
    for table, version in (("ticks", ""), ("candles", ", ticks"), ("signals", ""), ("signal_outcomes", ", ticks")):
        (create,) = [s for s in statements if f"EXISTS tw.{table} ON CLUSTER 'prod' (" in s]
        engine = f"ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/{{database}}/{table}', '{{replica}}'{version})"
        assert engine in create, create


def test_retention_becomes_a_ttl_on_the_rows_time_and_applies_to_existing_tables() -> None:
    statements = migrations("tw", TableOptions(cluster="prod", ticks_retention_days=7, signals_retention_days=30))
    ticks = next(s for s in statements if "EXISTS tw.ticks" in s)
    assert re.search(r"TTL toDateTime\(time\) \+ INTERVAL 7 DAY\s*$", ticks.strip())
    candles = next(s for s in statements if "EXISTS tw.candles" in s)
    assert "TTL" not in candles
    alters = [s for s in statements if s.startswith("ALTER") and "MODIFY TTL" in s]
    assert alters == [
        "ALTER TABLE tw.ticks ON CLUSTER 'prod' MODIFY TTL toDateTime(time) + INTERVAL 7 DAY SETTINGS materialize_ttl_after_modify = 0",
        "ALTER TABLE tw.signals ON CLUSTER 'prod' MODIFY TTL toDateTime(time) + INTERVAL 30 DAY SETTINGS materialize_ttl_after_modify = 0",
        "ALTER TABLE tw.signal_outcomes ON CLUSTER 'prod' MODIFY TTL toDateTime(signal_time) + INTERVAL 30 DAY SETTINGS "
        "materialize_ttl_after_modify = 0",
    ]
    outcomes = next(s for s in statements if "EXISTS tw.signal_outcomes" in s)
    assert re.search(r"TTL toDateTime\(signal_time\) \+ INTERVAL 30 DAY\s*$", outcomes.strip()), "outcomes live as long as signals"
    assert "ORDER BY (tenant, signal_id, horizon_ms)" in outcomes


def test_a_cluster_name_is_checked_at_start() -> None:
    with pytest.raises(SettingsError, match="TICKWIRE_CLICKHOUSE_CLUSTER"):
        load_settings(clickhouse_cluster="x'; DROP TABLE t; --")


@pytest.mark.parametrize("cluster", [None, "prod"])
def test_the_indicator_columns_are_created_with_new_tables_and_added_to_existing_ones(cluster) -> None:
    statements = migrations("tw", TableOptions(cluster=cluster))
    on = " ON CLUSTER 'prod'" if cluster else ""
    create = next(s for s in statements if "EXISTS tw.candles" in s)
    for column in ("indicators Map(String, Float64)", "vwap_sums Array(Float64)"):
        assert column in create
        added = f"ALTER TABLE tw.candles{on} ADD COLUMN IF NOT EXISTS {column}"
        assert added in statements and statements.index(added) > statements.index(create)
