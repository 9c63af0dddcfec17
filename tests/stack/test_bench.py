"""``tickwire bench --quick`` runs end to end and writes every section with sane figures.

Correctness only: timings on a shared CI box say nothing, so nothing here is
compared with a target. The bench attaches to the session's stack (it empties
its topics and stores between phases, as it does its own).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from bench.api_load import ENDPOINTS
from bench.ingest import CONTENDERS
from bench.plan import QUICK
from bench.runner import run_bench
from pipeline.config import STAGE_NAMES, Settings

pytestmark = pytest.mark.stack


def _positive(*values: float) -> bool:
    return all(isinstance(v, (int, float)) and v > 0 for v in values)


def test_quick_bench_writes_every_section(stack_settings: Settings, tmp_path: Path) -> None:
    run_bench(QUICK, "quick-test", tmp_path, Console(file=io.StringIO(), width=120), stack_settings=stack_settings)
    results = json.loads((tmp_path / "quick-test.json").read_text())
    assert (tmp_path / "quick-test.png").stat().st_size > 10_000

    ingest = results["ingest"]
    assert set(ingest["contenders"]) == set(CONTENDERS)
    for name, entry in ingest["contenders"].items():
        assert _positive(entry["median"], entry["min"], entry["max"]), name
        for run in entry["details"]:
            assert run["stored"] == (0 if name == "decode_ceiling" else run["records"]), (name, run)
    tickwire = ingest["contenders"]["tickwire"]["details"][0]
    assert _positive(tickwire["startup_s"], tickwire["join_s"], tickwire["seconds"])
    assert _positive(*ingest["ratios"].values())

    replay = results["replay"]
    assert replay["baseline"] is None, "the replay's baseline is the ingest phase of the same run"
    assert replay["ingest_rate"] == ingest["contenders"]["tickwire"]["median"]
    assert _positive(replay["median"], replay["ratio_to_ingest"])
    for run in replay["details"]:
        assert run["records"] == run["stored"] == QUICK.ingest_records and run["hot_keys"] == 150, run
        assert list(run["stages"]) == list(STAGE_NAMES) and run["stages"]["ingest"]["records"] == QUICK.ingest_records

    full = results["full_pipeline"]
    assert _positive(full["median"], full["ratio_to_ingest"])
    assert list(full["stages"]) == list(STAGE_NAMES), "each stage's own figures, from the worker's metrics"
    assert full["stages"]["ingest"]["records"] == QUICK.full_records
    assert full["stages"]["signals"]["records"] == QUICK.full_signals
    for stage, figures in full["stages"].items():
        assert _positive(figures["seconds"], figures["records_per_s"]) and figures["peak_lag"] >= 0, stage
    assert full["backfill"]["ticks"] == QUICK.full_records * 24 * 3_600_000 // QUICK.full_span_ms
    assert _positive(full["backfill"]["seconds_estimated"]) and str(full["backfill"]["ticks"]) in \
        full["backfill"]["volume"].replace(",", "")
    derived = full["derived"]
    assert derived["ticks"] == QUICK.full_records and derived["signals"] == QUICK.full_signals
    assert derived["enriched_signals"] == QUICK.full_signals
    assert _positive(sum(derived["bars"].values()), derived["patterns"], derived["correlation_edges"], derived["strategy_edges"])

    latency = results["latency"]
    assert latency["sent"] > 0 and latency["unseen"] == {"hot_key": 0, "clickhouse": 0}
    for path in ("hot_key", "clickhouse", "broker_floor"):
        s = latency[path]
        assert s["samples"] > 0 and _positive(s["p50_ms"], s["p99_ms"]) and s["p50_ms"] <= s["p99_ms"] <= s["max_ms"], path
    assert latency["hot_key"]["samples"] == latency["clickhouse"]["samples"] == latency["sent"]
    assert latency["worker_checkpoints"]["checkpoint"]["count"] > 0

    api = results["api"]
    assert set(api["endpoints"]) == set(ENDPOINTS)
    for path, e in api["endpoints"].items():
        assert e["errors"] == 0 and _positive(e["requests"], e["rps"], e["p50_ms"], e["single_client"]["p50_ms"]), path
    for path in ("/v1/ticks/latest", "/v1/ticks", "/v1/candles"):
        assert api["endpoints"][path]["non_empty_share"] == 1.0, path

    memory = results["memory"]
    assert _positive(memory["rss_steady_mb"], memory["rss_end_mb"], memory["peak_rss_mb"])
    assert memory["samples"][-1]["ticks"] == QUICK.memory_records
    assert list(memory["stages"]) == list(QUICK.memory_stages)
    assert memory["stages"]["ingest"]["records"] == QUICK.full_records
    assert memory["stages"]["patterns"]["records"] == sum(derived["bars"].values()), "every bar the ingest stage published"
    for stage, figures in memory["stages"].items():
        assert _positive(figures["records"], figures["peak_rss_mb"], figures["rss_end_mb"]), stage
        assert figures["peak_rss_mb"] >= figures["rss_end_mb"], stage

    assert len(results["targets"]) == 9 and all(isinstance(t["met"], bool) for t in results["targets"])
