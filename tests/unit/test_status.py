"""The stages' status: running, paused (by which circuit), stalled, starting; lag from committed offsets."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiokafka import TopicPartition

from pipeline.core.circuit import CircuitBreaker
from pipeline.runtime.checkpoint import Committed
from pipeline.runtime.log_ends import LogEnd
from pipeline.runtime.status import PipelineStatus
from pipeline.runtime.topology import TOPOLOGY

TP = TopicPartition("candles.v1", 3)


@dataclass
class FakeCheckpoint:
    circuits: dict[str, CircuitBreaker] = field(default_factory=dict)
    committed: dict[TopicPartition, Committed] = field(default_factory=dict)
    last_commit_at: float | None = None
    commits: int = 0


@dataclass
class FakeStage:
    name: str
    checkpoint: FakeCheckpoint = field(default_factory=FakeCheckpoint)
    writes_analytics: bool = False
    consuming: bool = True
    assigned: set[TopicPartition] = field(default_factory=lambda: {TP})
    group_offset: int | None = None

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def group_committed(self, tp: TopicPartition) -> int | None:
        return self.group_offset


class FakeEnds:
    def __init__(self, ends: dict[TopicPartition, LogEnd]) -> None:
        self.ends = ends


def status(stage: FakeStage, end: int, newest_ms: int | None = 10_000, stall_after_s: float = 60) -> PipelineStatus:
    return PipelineStatus([stage], FakeEnds({TP: LogEnd(end, newest_ms, time.time())}), stall_after_s)  # type: ignore[list-item,arg-type]


def test_a_caught_up_stage_is_running_with_no_lag() -> None:
    stage = FakeStage("patterns", FakeCheckpoint(committed={TP: Committed(100, 10_000)}, last_commit_at=time.time()))
    report = status(stage, 100).stage_report(stage)  # type: ignore[arg-type]
    assert report["state"] == "running" and report["lag"]["records"] == 0 and report["lag"]["seconds"] == 0


def test_a_stage_with_an_open_circuit_is_paused_by_it_and_shows_its_whole_backlog() -> None:
    circuit = CircuitBreaker("patterns", "patterns")
    circuit.failed(ConnectionError("down"))
    stage = FakeStage("patterns", FakeCheckpoint(circuits={"patterns": circuit},
                                                 committed={TP: Committed(40, 4_000)}, last_commit_at=time.time()))
    report = status(stage, 100, newest_ms=10_000).stage_report(stage)  # type: ignore[arg-type]
    assert report["state"] == "paused"
    assert report["paused_by"]["sink"] == "patterns" and report["paused_by"]["since"] == circuit.opened_at
    assert report["lag"]["records"] == 60 and report["lag"]["seconds"] == 6.0
    assert report["lag"]["partitions"] == {"candles.v1/3": {"records": 60, "seconds": 6.0}}


def test_lag_without_a_commit_for_too_long_is_stalled() -> None:
    stage = FakeStage("graph", FakeCheckpoint(committed={TP: Committed(40, 4_000)}, last_commit_at=time.time() - 120))
    assert status(stage, 100, stall_after_s=60).stage_report(stage)["state"] == "stalled"  # type: ignore[arg-type]
    assert status(stage, 40, stall_after_s=60).stage_report(stage)["state"] == "running"  # type: ignore[arg-type]


def test_before_its_consumer_runs_a_stage_is_starting() -> None:
    stage = FakeStage("ingest", consuming=False)
    assert status(stage, 0).stage_report(stage)["state"] == "starting"  # type: ignore[arg-type]


async def test_without_a_local_commit_the_groups_committed_offset_is_the_reference() -> None:
    stage = FakeStage("patterns", group_offset=70)
    view = status(stage, 100)
    assert view.lag(stage)[TP].records == 100  # type: ignore[arg-type]
    await view.refresh_committed()
    assert view.lag(stage)[TP].records == 30 and view.lag(stage)[TP].seconds is None  # type: ignore[arg-type]


def test_the_answer_version_changes_with_every_checkpoint_of_a_stage_that_writes_clickhouse() -> None:
    ingest = FakeStage("ingest", writes_analytics=True)
    graph = FakeStage("graph")
    view = PipelineStatus([ingest, graph], FakeEnds({}), 60)  # type: ignore[list-item,arg-type]
    before = view.version()
    graph.checkpoint.commits += 1
    assert view.version() == before
    ingest.checkpoint.commits += 1
    assert view.version() != before
    ingest.consuming = False
    assert view.version() is None


def test_the_outcomes_stage_writes_clickhouse_so_its_checkpoints_change_the_answer_version() -> None:
    spec = next(spec for spec in TOPOLOGY if spec.name == "outcomes")
    outcomes = FakeStage("outcomes", writes_analytics=spec.writes_analytics)
    view = PipelineStatus([outcomes], FakeEnds({}), 60)  # type: ignore[list-item,arg-type]
    before = view.version()
    outcomes.checkpoint.commits += 1
    assert view.version() != before, "kept /v1/strategies/performance answers must not outlive an outcomes checkpoint"


def _sample(name: str, **labels: str) -> float | None:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels)


def test_lag_gauges_of_partitions_no_longer_owned_disappear() -> None:
    """After a rebalance, a stale lag of a partition another worker now owns must not keep an alert firing."""
    stage = FakeStage("graph-gauges", FakeCheckpoint(committed={TP: Committed(40, 4_000)}, last_commit_at=time.time()))
    view = status(stage, 100)
    view.update_metrics()
    labels = {"stage": "graph-gauges", "topic": TP.topic, "partition": str(TP.partition)}
    assert _sample("tickwire_consumer_lag", **labels) == 60 and _sample("tickwire_consumer_lag_seconds", **labels) == 6.0
    stage.assigned = set()
    view.update_metrics()
    assert _sample("tickwire_consumer_lag", **labels) is None and _sample("tickwire_consumer_lag_seconds", **labels) is None
