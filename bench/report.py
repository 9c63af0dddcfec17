"""The benchmark's results: the targets and where the run stands, the printed table, the JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.ingest import CONTENDERS


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issues 7 and 16 that this run measured (a partial run measures some), with its value and
    whether it is met. ``/v1/ticks`` is judged as served (answers cached, see ``hit_ratio``); its uncached figure
    is reported next to it."""
    rows = []
    if "ingest" in results:
        ratios = results["ingest"]["ratios"]
        to_b, to_c = ratios["tickwire_vs_sink_ceiling"], ratios["tickwire_vs_quix_peer"]
        rows += [("ingest ≥ 50% of the sink ceiling (b)", "tickwire ÷ (b) ≥ 0.5", to_b, to_b >= 0.5),
                 ("ingest ≥ 2× the Quix Streams peer (c)", "tickwire ÷ (c) ≥ 2", to_c, to_c >= 2.0)]
    if "replay" in results:
        replayed = results["replay"]["ratio_to_ingest"]
        rows += [("replay into empty stores ÷ live ingest", "≥ 0.9", replayed, replayed >= 0.9)]
    full_ratio = results.get("full_pipeline", {}).get("ratio_to_ingest")
    if full_ratio is not None:
        rows += [("full pipeline ÷ ingest (1)", "≥ 0.5", full_ratio, full_ratio >= 0.5)]
    if "latency" in results:
        hot, ch = results["latency"]["hot_key"]["p99_ms"], results["latency"]["clickhouse"]["p99_ms"]
        rows += [("produce → hot key p99 (ms)", "< 50", hot, hot < 50),
                 ("produce → ClickHouse p99 (ms)", "< 1000", ch, ch < 1000)]
    if "api" in results:
        endpoints = results["api"]["endpoints"]
        latest, page = endpoints["/v1/ticks/latest"]["p99_ms"], endpoints["/v1/ticks"]["p99_ms"]
        rows += [("/v1/ticks/latest p99 (ms)", "< 5", latest, latest < 5),
                 ("/v1/ticks?limit=100 p99 (ms)", "< 20", page, page < 20)]
    if "memory" in results:
        growth = results["memory"]["growth_pct"]
        rows += [("worker RSS growth, steady state → end (%)", "< 10", growth, growth < 10)]
    return [{"what": what, "target": target, "value": value, "met": met} for what, target, value, met in rows]


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def print_tables(results: dict[str, Any], console: Console) -> None:
    """The tables of the phases this run measured, then its targets. Figures another phase adds later (a full
    run's ``stages`` and ``backfill``, the API's ``under_ingest``) are shown when present."""
    if "ingest" in results:
        _ingest_table(results, console)
    elif "full_pipeline" in results:
        full = results["full_pipeline"]
        console.print(f"full pipeline: {_rate(full['median'])} records/s (min {_rate(full['min'])}, "
                      f"max {_rate(full['max'])})")
    if "replay" in results:
        _replay_table(results["replay"], console)
    if "full_pipeline" in results:
        _stages_table(results["full_pipeline"], console)
    if "latency" in results:
        _latency_table(results["latency"], console)
    if "api" in results:
        _api_table(results["api"], console)
        if results["api"].get("under_ingest"):
            _under_ingest_table(results["api"]["under_ingest"], console)
    if "memory" in results:
        _memory_table(results["memory"], console)

    table = Table(title="targets")
    for column in ("target", "bound", "this run", "met"):
        table.add_column(column)
    for t in results["targets"]:
        table.add_row(t["what"], t["target"], f"{t['value']:g}", "[green]yes[/green]" if t["met"] else "[red]no[/red]")
    console.print(table)


def _replay_table(replay: dict[str, Any], console: Console) -> None:
    baseline = " (baseline: one live worker run of this phase)" if replay.get("baseline") else ""
    table = Table(title=f"replay: tickwire replay of {replay['records']:,} retained ticks into empty stores "
                        f"(ticks/s, {replay['runs']} runs){baseline}")
    for column in ("", "median", "min", "max", "÷ live ingest"):
        table.add_column(column, justify="left" if not column else "right")
    table.add_row("tickwire replay (every stage)", _rate(replay["median"]), _rate(replay["min"]), _rate(replay["max"]),
                  f"{replay['ratio_to_ingest']:.2f}")
    table.add_row("live worker (ingest (1))", _rate(replay["ingest_rate"]), "", "", "1.00")
    console.print(table)


def _stages_table(full: dict[str, Any], console: Console) -> None:
    stages = full.get("stages")
    if stages:
        table = Table(title="full pipeline per stage (the run nearest the median; seconds from partition assignment "
                            "to the stage's last commit)")
        table.add_column("stage")
        for column in ("records", "seconds", "records/s", "peak lag (records)"):
            table.add_column(column, justify="right")
        for name, s in stages.items():
            table.add_row(name, f"{s['records']:,}", f"{s['seconds']:.1f}", _rate(s["records_per_s"]),
                          f"{s['peak_lag']:,}" if s.get("peak_lag") is not None else "")
        console.print(table)
    backfill = full.get("backfill")
    if backfill and backfill.get("seconds_estimated") is not None:
        console.print(f"backfill: {backfill['volume']}: ~{backfill['seconds_estimated'] / 60:,.1f} min at the full "
                      f"pipeline's rate", highlight=False)


def _under_ingest_table(under: dict[str, Any], console: Console) -> None:
    table = Table(title=f"API without the cache, {under.get('clients', '?')} clients, beside "
                        f"{under.get('rate', 0):,} ticks/s of ingestion (ms)")
    table.add_column("endpoint", no_wrap=True)
    for column in ("p50 ms", "p99 ms", "req/s", "errors"):
        table.add_column(column, justify="right")
    for path, e in under.get("endpoints", {}).items():
        table.add_row(path, f"{e['p50_ms']:.2f}", f"{e['p99_ms']:.2f}", _rate(e["rps"]), str(e.get("errors", "")))
    console.print(table)
    ratio = under.get("ingest_ratio") or {}
    if ratio:
        console.print("ingestion with reads ÷ without: " + ", ".join(f"{k} {v}" for k, v in ratio.items()),
                      highlight=False)


def _memory_table(memory: dict[str, Any], console: Console) -> None:
    console.print(f"memory: worker RSS {memory['rss_steady_mb']:.0f} MB after {memory['steady_at']:,} ticks, "
                  f"{memory['rss_end_mb']:.0f} MB after {memory['ticks']:,} ({memory['growth_pct']:+.1f}%), "
                  f"peak {memory['peak_rss_mb']:.0f} MB (every stage in one process)", highlight=False)
    stages = memory.get("stages")
    if not stages:
        return
    table = Table(title="memory per stage: one worker per stage (--stages), one after the other on the full "
                        "pipeline's backlog (MB)")
    table.add_column("stage")
    for column in ("records", "before 1st commit", "peak RSS", "end RSS"):
        table.add_column(column, justify="right")
    for name, s in stages.items():
        before = s["baseline_rss_mb"]
        table.add_row(name, f"{s['records']:,}", f"{before:.0f}" if before is not None else "", f"{s['peak_rss_mb']:.0f}",
                      f"{s['rss_end_mb']:.0f}")
    console.print(table)


def _ingest_table(results: dict[str, Any], console: Console) -> None:
    ingest = results["ingest"]
    table = Table(title=f"ingest: {ingest['records']:,} preloaded ticks, {ingest['partitions']} partitions, "
                        f"{ingest['keys']} keys, {ingest['value_bytes']:.0f}-byte values (ticks/s, {ingest['runs']} runs)")
    for column in ("contender", "median", "min", "max", "tickwire ÷ this"):
        table.add_column(column, justify="left" if column == "contender" else "right")
    tickwire = ingest["contenders"]["tickwire"]["median"]
    for name, entry in ingest["contenders"].items():
        ratio = "" if name == "tickwire" else f"{tickwire / entry['median']:.2f}"
        table.add_row(CONTENDERS[name], _rate(entry["median"]), _rate(entry["min"]), _rate(entry["max"]), ratio)
    if "full_pipeline" not in results:
        console.print(table)
        return
    full = results["full_pipeline"]
    table.add_row(f"tickwire full pipeline ({full['ticks']:,} ticks over {full['event_span_ms'] / 3_600_000:g} h "
                  f"+ {full['signals']:,} signals)", _rate(full["median"]), _rate(full["min"]), _rate(full["max"]),
                  f"{full['ratio_to_ingest']:.2f} of (1)")
    console.print(table)


def _latency_table(latency: dict[str, Any], console: Console) -> None:
    table = Table(title=f"latency at {latency['achieved_rate']:,.0f} ticks/s for {latency['seconds']:g} s (ms)")
    for column in ("path", "p50", "p95", "p99", "max", "samples"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for label, key in (("produce → hot key", "hot_key"), ("produce → ClickHouse row", "clickhouse"),
                       ("produce → bare aiokafka consumer (broker floor)", "broker_floor")):
        s = latency[key]
        table.add_row(label, f"{s['p50_ms']:.1f}", f"{s['p95_ms']:.1f}", f"{s['p99_ms']:.1f}", f"{s['max_ms']:.1f}",
                      f"{s['samples']:,}")
    console.print(table)


def _api_table(api: dict[str, Any], console: Console) -> None:
    table = Table(title=f"API: {api['clients']} concurrent clients in {api['client_processes']} client processes, "
                        f"{api['seconds_per_endpoint']:g} s per endpoint (no-cache: every answer computed)")
    table.add_column("endpoint", no_wrap=True)
    for column in ("p50 ms", "p99 ms", "req/s", "cache hits", "errors", "1 client: p50 ms", "p99 ms"):
        table.add_column(column, justify="right")

    def row(label: str, e: dict[str, Any], cached: bool) -> None:
        alone = e["single_client"]
        table.add_row(label, f"{e['p50_ms']:.2f}", f"{e['p99_ms']:.2f}", _rate(e["rps"]),
                      f"{e['hit_ratio']:.0%}" if cached else "", str(e["errors"]), f"{alone['p50_ms']:.2f}",
                      f"{alone['p99_ms']:.2f}")

    for path, e in api["endpoints"].items():
        row(path, e, "uncached" in e)
        if "uncached" in e:
            row("  no-cache", e["uncached"], True)
    console.print(table)
