"""The derived stages' SQL, on chDB, in a child process with a chDB directory of its own (one engine per process).

- The series condition selects exactly the rows of the series asked for: every subset of a small universe of
  series, "rectangles" (where one IN per column is exact) and the rest (where the exact tuple test must be added).
- The bars query breaks ties in time by the source position (partition, then offset), whatever their size.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.stack

UNIVERSE = [(t, b, s) for t in ("t1", "t2") for b in ("b1", "b2") for s in ("EURUSD", "XAUUSD")]

SCRIPT = textwrap.dedent("""
    import json, sys
    import clickhouse_connect
    from pipeline.stores.series_filter import series_filter

    client = clickhouse_connect.get_client(interface="chdb", path=sys.argv[1])
    client.command("CREATE DATABASE IF NOT EXISTS probe")
    client.command("CREATE TABLE probe.rows (tenant LowCardinality(String), broker LowCardinality(String), "
                   "symbol LowCardinality(String), n UInt32) ENGINE = MergeTree ORDER BY (tenant, broker, symbol)")
    universe, subsets = json.loads(sys.stdin.read())
    client.insert("probe.rows", [[*s, i] for i, s in enumerate(universe)], column_names=["tenant", "broker", "symbol", "n"])
    out = []
    for subset in subsets:
        condition, parameters = series_filter([tuple(s) for s in subset])
        rows = client.query("SELECT tenant, broker, symbol FROM probe.rows WHERE " + condition, parameters=parameters)
        out.append([condition, sorted(list(r) for r in rows.result_rows)])
    print(json.dumps(out))
""")


def test_every_subset_of_series_selects_exactly_its_rows(tmp_path: Path) -> None:
    subsets = [list(c) for k in range(1, len(UNIVERSE) + 1) for c in itertools.combinations(UNIVERSE, k)]
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "chdb")], input=json.dumps([UNIVERSE, subsets]),
                            capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    assert len(answers) == len(subsets) == 255
    exact_tests = 0
    for subset, (condition, rows) in zip(subsets, answers):
        assert rows == sorted(list(s) for s in subset), (subset, condition)
        exact_tests += "series_exact" in condition
    rectangles = [s for s in subsets if len(s) == len({x[0] for x in s}) * len({x[1] for x in s}) * len({x[2] for x in s})]
    assert exact_tests == len(subsets) - len(rectangles)  # the tuple test only where the per-column INs are not exact


BARS_SCRIPT = textwrap.dedent("""
    import json, sys
    import clickhouse_connect
    from pipeline.derive.candles import BARS_SQL
    from pipeline.stores.analytics_tables import migrations
    from pipeline.stores.series_filter import series_filter

    client = clickhouse_connect.get_client(interface="chdb", path=sys.argv[1])
    for ddl in migrations("tw"):
        client.command(ddl)
    ticks = json.loads(sys.stdin.read())
    columns = ["tenant", "broker", "symbol", "time", "bid", "ask", "last", "volume", "volume_real", "flags", "spread",
               "src_partition", "src_offset"]
    rows = [["t", "b", "S", t["ms"], t["bid"], t["bid"] + 1, 0.0, 0, 0.0, 6, 1.0, t["p"], t["o"]] for t in ticks]
    client.insert("tw.ticks", rows, column_names=columns)
    condition, parameters = series_filter([("t", "b", "S")])
    sql = BARS_SQL.replace("{db}", "tw").replace("{series_filter}", condition)
    bars = client.query(sql, parameters={**parameters, "tf": 60_000, "lo": 0, "hi": 10**13, "brokers": [], "shifts": []})
    print(json.dumps([[int(r[3]), r[4], r[8], r[9]] for r in sorted(bars.result_rows, key=lambda r: r[3])]))
""")


def test_the_bars_query_breaks_ties_in_time_by_partition_then_offset(tmp_path: Path) -> None:
    t0 = 1_763_899_200_000
    big = 2**63 + 5  # offsets are UInt64: the packing must not overflow into the partition
    ticks = [  # per minute: several ticks in its first and its last millisecond, positions out of order
        {"ms": t0, "bid": 1.0, "p": 2, "o": 1}, {"ms": t0, "bid": 2.0, "p": 1, "o": big}, {"ms": t0, "bid": 3.0, "p": 1, "o": 7},
        {"ms": t0 + 59_999, "bid": 4.0, "p": 0, "o": big}, {"ms": t0 + 59_999, "bid": 5.0, "p": 3, "o": 0},
        {"ms": t0 + 59_999, "bid": 6.0, "p": 2, "o": 2**64 - 1},
        {"ms": t0 + 60_000, "bid": 7.0, "p": 2**32 - 1, "o": 0}, {"ms": t0 + 60_000, "bid": 8.0, "p": 2**32 - 2, "o": 2**64 - 1},
        {"ms": t0 + 60_001, "bid": 9.0, "p": 0, "o": 0},  # later by a millisecond: later than any position before it
    ]
    result = subprocess.run([sys.executable, "-c", BARS_SCRIPT, str(tmp_path / "chdb")], input=json.dumps(ticks),
                            capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr
    expected = []
    for start in (t0, t0 + 60_000):
        window = sorted((t for t in ticks if start <= t["ms"] < start + 60_000), key=lambda t: (t["ms"], t["p"], t["o"]))
        first, last = window[0], window[-1]
        expected.append([start, first["bid"] + 0.5, last["bid"], last["bid"] + 1])  # open (mid), bid_close, ask_close
    assert json.loads(result.stdout) == expected
