"""How big each benchmark is: the full run (the published figures) and ``--quick`` (a smoke run)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pipeline.config import STAGE_NAMES

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS


@dataclass(frozen=True)
class Plan:
    mode: str
    #: (1) ingest: ticks preloaded, all timed within ``ingest_span_ms`` (one minute: no bar closes)
    ingest_records: int
    ingest_span_ms: int
    #: runs of every ingest contender (the median is reported)
    runs: int
    #: the naive Faust agent is timed on this many of the preloaded ticks (it is ~20x slower)
    faust_records: int
    #: (2) full pipeline: ticks and signals over ``full_span_ms`` of event time (bars close)
    full_records: int
    full_signals: int
    full_span_ms: int
    full_runs: int
    #: (3) latency: a steady rate for a duration
    latency_rate: int
    latency_s: float
    #: (4) API: seconds of load per endpoint, concurrent clients
    api_s: float
    api_clients: int
    #: (5) memory: ticks through one worker, and the point the steady state is taken at
    memory_records: int
    memory_steady_at: int
    #: (5) memory: the stages measured alone, one worker each, upstream first (a worker's start-up is most of a
    #: quick run's share: the quick run measures one upstream and one downstream stage)
    memory_stages: tuple[str, ...]
    #: consumer group session timeout of every consumer (tansu delays a first join by half of it)
    session_timeout_ms: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


FULL = Plan(
    mode="full", ingest_records=1_000_000, ingest_span_ms=MINUTE_MS, runs=3, faust_records=100_000,
    full_records=1_000_000, full_signals=5_000, full_span_ms=6 * HOUR_MS, full_runs=3,
    latency_rate=10_000, latency_s=60.0, api_s=10.0, api_clients=16,
    memory_records=5_000_000, memory_steady_at=1_000_000, memory_stages=STAGE_NAMES, session_timeout_ms=6_000,
)

QUICK = Plan(
    mode="quick", ingest_records=50_000, ingest_span_ms=MINUTE_MS, runs=1, faust_records=5_000,
    full_records=20_000, full_signals=100, full_span_ms=HOUR_MS, full_runs=1,
    latency_rate=2_000, latency_s=5.0, api_s=1.0, api_clients=16,
    memory_records=60_000, memory_steady_at=20_000, memory_stages=("ingest", "patterns"), session_timeout_ms=3_000,
)
