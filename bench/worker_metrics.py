"""What the worker says about its own checkpoints (its Prometheus ``/metrics``), to explain a latency.

From the histograms ``tickwire_checkpoint_seconds`` (a whole checkpoint: every
sink, the producer, the commit) and ``tickwire_sink_flush_seconds`` (each
sink's flush): how many, their mean, and the bucket bound under which 99% of
them fell. The consume loop does not fetch while a checkpoint runs, so these
bound how long a fetched tick can wait for its hot key.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections import defaultdict
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from pipeline.config import Settings


def _summary(buckets: list[tuple[float, float]], count: float, total: float) -> dict[str, Any]:
    p99_bound = next((bound for bound, cumulative in sorted(buckets) if cumulative >= 0.99 * count), float("inf"))
    return {"count": int(count), "mean_ms": round(total / count * 1000, 2) if count else 0.0,
            "p99_le_ms": p99_bound * 1000 if p99_bound != float("inf") else None}


def checkpoint_stats(settings: Settings) -> dict[str, Any]:
    """Checkpoint and per-sink flush statistics of the worker at ``settings.api_url`` (empty if it did not answer)."""
    try:
        with urllib.request.urlopen(settings.api_url + "/metrics", timeout=10) as response:
            text = response.read().decode()
    except (urllib.error.URLError, TimeoutError):
        return {}
    histograms: dict[str, dict[str, Any]] = defaultdict(lambda: {"buckets": [], "count": 0.0, "sum": 0.0})
    for family in text_string_to_metric_families(text):
        if family.name not in ("tickwire_checkpoint_seconds", "tickwire_sink_flush_seconds"):
            continue
        for sample in family.samples:
            name = "checkpoint" if family.name == "tickwire_checkpoint_seconds" else sample.labels.get("sink", "?")
            entry = histograms[name]
            if sample.name.endswith("_bucket"):
                entry["buckets"].append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_count"):
                entry["count"] = sample.value
            elif sample.name.endswith("_sum"):
                entry["sum"] = sample.value
    return {name: _summary(h["buckets"], h["count"], h["sum"]) for name, h in histograms.items() if h["count"]}
