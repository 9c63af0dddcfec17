"""Prometheus metrics of the worker (served at /metrics by the API)."""

from __future__ import annotations

from prometheus_client import Counter

LATE_TICKS = Counter(
    "tickwire_late_ticks_total",
    "Ticks older than the open bar of their series, by timeframe and outcome (amended the bar, or dropped from candles).",
    ["timeframe", "outcome"],
)
