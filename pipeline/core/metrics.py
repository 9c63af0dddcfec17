"""Prometheus metrics of the worker (served at /metrics by the API).

Label sets are small and fixed (topics, sinks, reasons, timeframes): no
tenant, symbol or other unbounded value is ever a label.
"""

from __future__ import annotations

import functools
import platform
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import Counter, Gauge, Histogram

#: The state a stage may be in (pipeline.runtime.status), each a ``tickwire_stage_state`` series.
STAGE_STATES = ("starting", "running", "paused", "stalled")


@functools.cache
def package_version() -> str:
    """The installed tickwire's version (``unknown`` when it is not installed)."""
    try:
        return version("tickwire")
    except PackageNotFoundError:
        return "unknown"


RECORDS_CONSUMED = Counter(
    "tickwire_records_consumed_total", "Records fetched from input topics, by stage.", ["stage", "topic"])
RECORDS_PRODUCED = Counter("tickwire_records_produced_total", "Records handed to the producer, by topic.", ["topic"])
DLQ_RECORDS = Counter("tickwire_dlq_records_total", "Records sent to the DLQ, by stage and reason.", ["stage", "reason"])
BATCH_SIZE = Histogram(
    "tickwire_batch_records", "Records per fetched topic-partition batch.", ["stage", "topic"],
    buckets=(1, 10, 100, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000),
)
SINK_FLUSH_SECONDS = Histogram(
    "tickwire_sink_flush_seconds", "Time of a successful sink flush (including its retries).", ["stage", "sink"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
COMMIT_SECONDS = Histogram(
    "tickwire_checkpoint_seconds", "Time of a whole checkpoint: flush every sink, the producer, commit.", ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONSUMER_LAG = Gauge(
    "tickwire_consumer_lag", "Records between a stage's committed offset and the log end, per input partition.",
    ["stage", "topic", "partition"])
CONSUMER_LAG_SECONDS = Gauge(
    "tickwire_consumer_lag_seconds",
    "Seconds between the newest record of a partition and the last one a stage committed (0 when caught up).",
    ["stage", "topic", "partition"])
STORE_REFUSED = Counter(
    "tickwire_store_refused_total", "Records a store refused for good (dead-lettered), by stage and sink.",
    ["stage", "sink"])
LATE_TICKS = Counter(
    "tickwire_late_ticks_total",
    "Ticks older than the open bar of their series, by timeframe and outcome (amended the bar, or dropped from candles).",
    ["timeframe", "outcome"],
)
SINK_CIRCUIT_OPEN = Gauge(
    "tickwire_sink_circuit_open", "1 while a sink's store is unavailable (its stage paused).", ["stage", "sink"])
API_REQUEST_SECONDS = Histogram(
    "tickwire_api_request_seconds", "Time to answer an API request, by route (method and path template) and status.",
    ["route", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BUILD_INFO = Gauge("tickwire_build_info", "Always 1: the tickwire version and Python version of this process.",
                   ["version", "python"])
LAST_CHECKPOINT = Gauge(
    "tickwire_last_checkpoint_timestamp_seconds",
    "Epoch seconds at which the stage's last checkpoint that committed offsets ended (absent before the first).",
    ["stage"])
STAGE_STATE = Gauge(
    "tickwire_stage_state",
    "1 for the state the stage is in (starting, running, paused, stalled; as /health reports it), 0 for the others.",
    ["stage", "state"])
ROWS_WRITTEN = Counter(
    "tickwire_rows_written_total",
    "Items a sink durably wrote at a successful flush (buffered before it, minus what the store refused), by stage "
    "and sink: rows (ClickHouse tables), hot keys, records acknowledged (producer), bar windows (candles), bars "
    "(patterns, correlations), edges (strategy_edges), signals (signals.enriched), markers (cache.published_signals).",
    ["stage", "sink"])

BUILD_INFO.labels(package_version(), platform.python_version()).set(1)
