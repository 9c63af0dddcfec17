"""Summaries of repeated measurements: rates over runs, latency percentiles."""

from __future__ import annotations

import math
import statistics
from typing import Sequence


def rate_summary(rates: Sequence[float]) -> dict[str, float | list[float]]:
    """Median, min and max of per-run rates (records/s), and the runs themselves."""
    return {"median": round(statistics.median(rates), 1), "min": round(min(rates), 1), "max": round(max(rates), 1),
            "rates": [round(r, 1) for r in rates]}


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` (0..100) percentile of already sorted values (nearest rank)."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_summary(values_ms: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 and max (ms) of latencies, with the sample count."""
    ordered = sorted(values_ms)
    return {"samples": len(ordered), "p50_ms": round(percentile(ordered, 50), 2), "p95_ms": round(percentile(ordered, 95), 2),
            "p99_ms": round(percentile(ordered, 99), 2), "max_ms": round(ordered[-1], 2)}
