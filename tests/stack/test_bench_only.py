"""``tickwire bench --only PHASES``: a partial run measures only those phases (the API phase brings its own
preload), writes them under a name made of the phases, and judges only their targets."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from bench.api_load import CACHED, ENDPOINTS
from bench.cli import bench
from bench.plan import FULL, QUICK
from bench.runner import PHASES, run_bench, run_name
from pipeline.config import Settings


def test_partial_runs_are_named_after_their_phases_and_unknown_phases_are_refused() -> None:
    assert run_name(FULL, PHASES) == "full" and run_name(QUICK, PHASES) == "quick"
    assert run_name(FULL, ("api",)) == "full-api" and run_name(QUICK, ("full", "api")) == "quick-full-api"
    refused = CliRunner().invoke(bench, ["--only", "api,warp"])
    assert refused.exit_code == 2 and "--only" in refused.output
    assert CliRunner().invoke(bench, ["--only", ","]).exit_code == 2


@pytest.mark.stack
def test_only_api_preloads_the_full_pipeline_and_reports_the_api_alone(stack_settings: Settings, tmp_path: Path) -> None:
    name = run_name(QUICK, ("api",))
    run_bench(QUICK, name, tmp_path, Console(file=io.StringIO(), width=120), stack_settings=stack_settings,
              phases=("api",))
    results = json.loads((tmp_path / f"{name}.json").read_text())
    assert (tmp_path / f"{name}.png").stat().st_size > 5_000
    assert results["phases"] == ["api"]
    assert not {"ingest", "full_pipeline", "latency", "memory"} & set(results)
    api = results["api"]
    assert api["preload"]["derived"]["ticks"] == QUICK.full_records, "the API phase ran on a full-pipeline worker"
    assert set(api["endpoints"]) == set(ENDPOINTS)
    for path, e in api["endpoints"].items():
        assert e["errors"] == 0 and e["requests"] > 0 and e["single_client"]["p50_ms"] > 0, path
    for path in CACHED:
        e = api["endpoints"][path]
        assert e["non_empty_share"] == 1.0 and e["hit_ratio"] > 0, path
        assert e["uncached"]["hit_ratio"] == 0 and e["uncached"]["errors"] == 0, "no-cache answers are computed"
    assert [t["what"] for t in results["targets"]] == ["/v1/ticks/latest p99 (ms)", "/v1/ticks?limit=100 p99 (ms)"]


@pytest.mark.stack
def test_only_replay_times_its_own_live_baseline(stack_settings: Settings, tmp_path: Path) -> None:
    name = run_name(QUICK, ("replay",))
    run_bench(QUICK, name, tmp_path, Console(file=io.StringIO(), width=120), stack_settings=stack_settings,
              phases=("replay",))
    results = json.loads((tmp_path / f"{name}.json").read_text())
    assert (tmp_path / f"{name}.png").stat().st_size > 5_000
    assert results["phases"] == ["replay"] and "ingest" not in results
    replay = results["replay"]
    baseline = replay["baseline"]
    assert baseline["records"] == baseline["stored"] == QUICK.ingest_records, "one live worker run of the same ticks"
    assert replay["ingest_rate"] == baseline["rate"] > 0
    assert all(run["stored"] == QUICK.ingest_records for run in replay["details"])
    assert [t["what"] for t in results["targets"]] == ["replay into empty stores ÷ live ingest"]
