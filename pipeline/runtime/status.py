"""The read-only view of the stages a worker runs: state, circuits, lag, checkpoints.

The one place ``/health``, ``/metrics`` and the API's answer cache learn about
the pipeline (they never reach into sources or checkpoints themselves).

A stage is

- ``starting`` until its consumer runs;
- ``paused`` while one of its circuits is open (a store it writes is
  unavailable: it consumes nothing and retries; the report says which circuit
  and since when);
- ``stalled`` when it has lag and has not committed for
  ``TICKWIRE_STAGE_STALL_AFTER_S`` (and no circuit explains it);
- ``running`` otherwise.

Each stage's state is also the gauge ``tickwire_stage_state{stage, state}``
(1 for the current one, 0 for the others), set with the lag gauges by
:meth:`PipelineStatus.update_metrics` on the lag probe's interval.

Lag per partition is the log end now (:mod:`pipeline.runtime.log_ends`) minus
the stage's committed offset, in records, and in seconds: the newest record's
time minus the time of the last record the stage committed (0 when caught
up; null when the stage has committed nothing yet in this process).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from aiokafka import TopicPartition
from prometheus_client import Gauge

from pipeline.core.circuit import CircuitSnapshot
from pipeline.core.metrics import CONSUMER_LAG, CONSUMER_LAG_SECONDS, STAGE_STATE, STAGE_STATES
from pipeline.runtime.checkpoint import Checkpoint, Committed
from pipeline.runtime.log_ends import LogEnds

StageState = Literal["starting", "running", "paused", "stalled"]


class StageHandle(Protocol):
    """What the view needs of a running stage."""

    name: str
    writes_analytics: bool

    @property
    def checkpoint(self) -> Checkpoint: ...

    @property
    def consuming(self) -> bool: ...

    def assignment(self) -> set[TopicPartition]: ...

    async def group_committed(self, tp: TopicPartition) -> int | None: ...


@dataclass(frozen=True)
class PartitionLag:
    records: int
    seconds: float | None


class PipelineStatus:
    def __init__(self, stages: list[StageHandle], log_ends: LogEnds, stall_after_s: float) -> None:
        self._stages = stages
        self._log_ends = log_ends
        self._stall_after_s = stall_after_s
        self._group_committed: dict[tuple[str, TopicPartition], int] = {}
        self._started = time.time()
        self._published: set[tuple[str, str, str]] = set()  # lag label sets set by the last update_metrics

    @property
    def stage_names(self) -> list[str]:
        return [stage.name for stage in self._stages]

    @property
    def consuming(self) -> bool:
        """True once every stage's consumer runs."""
        return all(stage.consuming for stage in self._stages)

    def version(self) -> int | None:
        """Checkpoints of the stages that write ClickHouse so far: what answers of ClickHouse reads are valid
        for (None before every such stage runs)."""
        writers = [stage for stage in self._stages if stage.writes_analytics]
        if not writers or not all(stage.consuming for stage in writers):
            return None
        return sum(stage.checkpoint.commits for stage in writers)

    def circuits(self) -> dict[str, dict[str, CircuitSnapshot]]:
        """Per stage, each sink's circuit breaker."""
        return {stage.name: {name: c.snapshot() for name, c in stage.checkpoint.circuits.items()} for stage in self._stages}

    async def refresh_committed(self) -> None:
        """Learn the group's committed offset of partitions this process has not committed yet (a fresh
        start, a paused stage): without it their lag is unknown."""
        for stage in self._stages:
            for tp in stage.assignment():
                if tp not in stage.checkpoint.committed and (stage.name, tp) not in self._group_committed:
                    offset = await stage.group_committed(tp)
                    if offset is not None:
                        self._group_committed[stage.name, tp] = offset

    def lag(self, stage: StageHandle) -> dict[TopicPartition, PartitionLag]:
        """Lag of each partition the stage is assigned whose log end is known."""
        lags: dict[TopicPartition, PartitionLag] = {}
        for tp in stage.assignment():
            end = self._log_ends.ends.get(tp)
            if end is None:
                continue
            committed = stage.checkpoint.committed.get(tp)
            if committed is None:
                offset = self._group_committed.get((stage.name, tp), 0)
                committed = Committed(offset, None)
            records = max(0, end.offset - committed.offset)
            if records == 0:
                seconds: float | None = 0.0
            elif committed.record_time_ms is None or end.newest_time_ms is None:
                seconds = None
            else:
                seconds = max(0.0, (end.newest_time_ms - committed.record_time_ms) / 1000)
            lags[tp] = PartitionLag(records, seconds)
        return lags

    def stage_report(self, stage: StageHandle) -> dict[str, Any]:
        """One stage as ``/health`` shows it."""
        lags = self.lag(stage)
        circuits = {name: c.snapshot() for name, c in stage.checkpoint.circuits.items()}
        open_circuits = {name: c for name, c in circuits.items() if c["state"] == "open"}
        records = sum(lag.records for lag in lags.values())
        seconds = [lag.seconds for lag in lags.values()]
        known_seconds = [s for s in seconds if s is not None]
        last_commit = stage.checkpoint.last_commit_at
        state = self._state(stage, records, bool(open_circuits))
        paused_by = None
        if open_circuits:
            name, circuit = min(open_circuits.items(), key=lambda item: item[1]["open_since"] or 0)
            paused_by = {"sink": name, "since": circuit["open_since"], "error": circuit["last_error"]}
        return {
            "state": state,
            "paused_by": paused_by,
            "last_commit_at": last_commit,
            "lag": {
                "records": records,
                "seconds": None if len(known_seconds) < len(seconds) else max(known_seconds, default=0.0),
                "partitions": {f"{tp.topic}/{tp.partition}": {"records": lag.records, "seconds": lag.seconds}
                               for tp, lag in sorted(lags.items())},
            },
            "circuits": circuits,
        }

    def _state(self, stage: StageHandle, lag_records: int, paused: bool) -> StageState:
        if not stage.consuming:
            return "starting"
        if paused:
            return "paused"
        if lag_records > 0 and time.time() - (stage.checkpoint.last_commit_at or self._started) > self._stall_after_s:
            return "stalled"
        return "running"

    def report(self) -> dict[str, dict[str, Any]]:
        """Every stage as ``/health`` shows it."""
        return {stage.name: self.stage_report(stage) for stage in self._stages}

    def update_metrics(self) -> None:
        """Set the lag gauges of every stage and partition, and each stage's state gauge (1 for its state, 0 for
        the others)."""
        published: set[tuple[str, str, str]] = set()
        for stage in self._stages:
            lags = self.lag(stage)
            for tp, lag in lags.items():
                labels = (stage.name, tp.topic, str(tp.partition))
                CONSUMER_LAG.labels(*labels).set(lag.records)
                if lag.seconds is not None:
                    CONSUMER_LAG_SECONDS.labels(*labels).set(lag.seconds)
                    published.add(labels)
                else:
                    _forget(CONSUMER_LAG_SECONDS, labels)  # unknown now: no stale value for alerts to fire on
            published.update((stage.name, tp.topic, str(tp.partition)) for tp in lags)
            paused = any(circuit.state == "open" for circuit in stage.checkpoint.circuits.values())
            current = self._state(stage, sum(lag.records for lag in lags.values()), paused)
            for state in STAGE_STATES:
                STAGE_STATE.labels(stage.name, state).set(1 if state == current else 0)
        for labels in self._published - published:  # partitions this process no longer owns (a rebalance)
            _forget(CONSUMER_LAG, labels)
            _forget(CONSUMER_LAG_SECONDS, labels)
        self._published = published


def _forget(gauge: Gauge, labels: tuple[str, str, str]) -> None:
    """Remove one labelled series of ``gauge`` if it exists (Prometheus then sees no sample, not a stale one)."""
    try:
        gauge.remove(*labels)
    except KeyError:
        pass
