"""The full-pipeline bench's per-stage figures, read from a worker's Prometheus text."""

from __future__ import annotations

import asyncio

from bench.worker_run import StageSampler

METRICS = """\
tickwire_records_consumed_total{stage="graph",topic="candles.v1"} 300.0
tickwire_records_consumed_total{stage="graph",topic="signals.enriched.v1"} 20.0
tickwire_records_consumed_total{stage="ingest",topic="mt5.ticks.v1"} 1000.0
tickwire_consumer_lag{partition="0",stage="ingest",topic="mt5.ticks.v1"} %d
tickwire_consumer_lag{partition="1",stage="ingest",topic="mt5.ticks.v1"} 5.0
tickwire_last_checkpoint_timestamp_seconds{stage="ingest"} 1010.0
tickwire_last_checkpoint_timestamp_seconds{stage="graph"} 1020.0
tickwire_checkpoint_seconds_sum{stage="graph"} 2.5
tickwire_checkpoint_seconds_count{stage="graph"} 4.0
"""


def test_stage_figures_sum_topics_and_partitions_and_keep_the_peak_lag() -> None:
    texts = iter([METRICS % 95, METRICS % 40])
    sampler = StageSampler("http://unused")
    sampler._read = lambda: next(texts)  # type: ignore[method-assign]  # no worker: canned answers
    asyncio.run(sampler.sample())
    asyncio.run(sampler.sample())
    ingest, graph = sampler.stages["ingest"].as_dict(1000.0), sampler.stages["graph"].as_dict(1000.0)
    assert ingest == {"records": 1000, "seconds": 10.0, "records_per_s": 100.0, "peak_lag": 100,
                      "checkpoint_seconds": 0.0}
    assert graph == {"records": 320, "seconds": 20.0, "records_per_s": 16.0, "peak_lag": 0, "checkpoint_seconds": 2.5}
    assert sampler.stages["outcomes"].as_dict(1000.0)["records_per_s"] == 0.0  # never seen: no commit, no rate
