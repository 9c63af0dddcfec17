"""The benchmark's results: the targets and where the run stands, the printed table, the JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.ingest import CONTENDERS


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 7 with this run's value and whether it is met."""
    ingest, latency, api, memory = results["ingest"], results["latency"], results["api"], results["memory"]
    ratios, endpoints = ingest["ratios"], api["endpoints"]
    to_b, to_c = ratios["tickwire_vs_sink_ceiling"], ratios["tickwire_vs_quix_peer"]
    hot, ch = latency["hot_key"]["p99_ms"], latency["clickhouse"]["p99_ms"]
    latest, page = endpoints["/v1/ticks/latest"]["p99_ms"], endpoints["/v1/ticks"]["p99_ms"]
    growth = memory["growth_pct"]
    rows = [
        ("ingest ≥ 50% of the sink ceiling (b)", "tickwire ÷ (b) ≥ 0.5", to_b, to_b >= 0.5),
        ("ingest ≥ 2× the Quix Streams peer (c)", "tickwire ÷ (c) ≥ 2", to_c, to_c >= 2.0),
        ("produce → hot key p99 (ms)", "< 50", hot, hot < 50),
        ("produce → ClickHouse p99 (ms)", "< 1000", ch, ch < 1000),
        ("/v1/ticks/latest p99 (ms)", "< 5", latest, latest < 5),
        ("/v1/ticks?limit=100 p99 (ms)", "< 20", page, page < 20),
        ("worker RSS growth, steady state → end (%)", "within ±10", growth, abs(growth) <= 10),
    ]
    return [{"what": what, "target": target, "value": value, "met": met} for what, target, value, met in rows]


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def print_tables(results: dict[str, Any], console: Console) -> None:
    ingest = results["ingest"]
    table = Table(title=f"ingest: {ingest['records']:,} preloaded ticks, {ingest['partitions']} partitions, "
                        f"{ingest['keys']} keys, {ingest['value_bytes']:.0f}-byte values (ticks/s, {ingest['runs']} runs)")
    for column in ("contender", "median", "min", "max", "tickwire ÷ this"):
        table.add_column(column, justify="left" if column == "contender" else "right")
    tickwire = ingest["contenders"]["tickwire"]["median"]
    for name, entry in ingest["contenders"].items():
        ratio = "" if name == "tickwire" else f"{tickwire / entry['median']:.2f}"
        table.add_row(CONTENDERS[name], _rate(entry["median"]), _rate(entry["min"]), _rate(entry["max"]), ratio)
    full = results["full_pipeline"]
    table.add_row(f"tickwire full pipeline ({full['ticks']:,} ticks over {full['event_span_ms'] / 3_600_000:g} h "
                  f"+ {full['signals']:,} signals)", _rate(full["median"]), _rate(full["min"]), _rate(full["max"]),
                  f"{full['ratio_to_ingest']:.2f} of (1)")
    console.print(table)

    latency = results["latency"]
    table = Table(title=f"latency at {latency['achieved_rate']:,.0f} ticks/s for {latency['seconds']:g} s (ms)")
    for column in ("path", "p50", "p95", "p99", "max", "samples"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for label, key in (("produce → hot key", "hot_key"), ("produce → ClickHouse row", "clickhouse"),
                       ("produce → bare aiokafka consumer (broker floor)", "broker_floor")):
        s = latency[key]
        table.add_row(label, f"{s['p50_ms']:.1f}", f"{s['p95_ms']:.1f}", f"{s['p99_ms']:.1f}", f"{s['max_ms']:.1f}",
                      f"{s['samples']:,}")
    console.print(table)

    api = results["api"]
    table = Table(title=f"API: {api['clients']} concurrent clients, {api['seconds_per_endpoint']:g} s per endpoint")
    for column in ("endpoint", "p50 ms", "p99 ms", "req/s", "errors", "1 client: p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "endpoint" else "right")
    for path, e in api["endpoints"].items():
        alone = e["single_client"]
        table.add_row(path, f"{e['p50_ms']:.2f}", f"{e['p99_ms']:.2f}", _rate(e["rps"]), str(e["errors"]),
                      f"{alone['p50_ms']:.2f}", f"{alone['p99_ms']:.2f}")
    console.print(table)

    memory = results["memory"]
    console.print(f"memory: worker RSS {memory['rss_steady_mb']:.0f} MB after {memory['steady_at']:,} ticks, "
                  f"{memory['rss_end_mb']:.0f} MB after {memory['ticks']:,} ({memory['growth_pct']:+.1f}%)")

    table = Table(title="targets")
    for column in ("target", "bound", "this run", "met"):
        table.add_column(column)
    for t in results["targets"]:
        table.add_row(t["what"], t["target"], f"{t['value']:g}", "[green]yes[/green]" if t["met"] else "[red]no[/red]")
    console.print(table)
