"""Replay: re-run retained records of input topics through the pipeline, for backfill.

A replay reads a range of ``mt5.ticks.v1`` / ``mt5.signals.v1`` without a
consumer group (the live group's offsets never move), decodes with the same
decoders, runs the same processing functions as the live agents
(pipeline.runtime.processing) into the same sinks (pipeline.runtime.sink_set, limited to the
chosen roles), and rebuilds what derives from them (candles, patterns, edges)
through the same builders. Every sink is idempotent, so replaying a range
twice changes nothing, and replaying into empty stores rebuilds them as the
live pipeline built them.

Range: ``start``/``end`` are a record timestamp (epoch ms, the Kafka record
time) or per-partition offsets; the end defaults to the log end seen when the
replay reaches each partition (from fetch high-watermarks: tansu's ListOffsets
end is wrong). Records that fail to decode are counted and skipped (the live
pipeline already dead-lettered them).

Progress is checkpointed like the worker's offsets (sinks flushed first) to
``<state_dir>/replay/<plan id>.json``; running the same plan again resumes
from there. A stop request (Ctrl-C) finishes the batch in hand, checkpoints
and returns.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.config import Settings
from pipeline.core.codec import BatchDecoder
from pipeline.runtime.checkpoint import Checkpoint
from pipeline.runtime.processing import TOPIC_HANDLERS
from pipeline.runtime.sink_set import ROLES, SinkSet
from pipeline.sinks.topic import TopicPublisher
from pipeline.stores.connections import Connections

_OFFSETS = re.compile(r"^\d+:\d+(,\d+:\d+)*$")


class ReplayError(RuntimeError):
    """The replay cannot run as asked; the message says why."""


@dataclass(frozen=True)
class Bound:
    """One end of a replay range: a record timestamp, or offsets per partition."""

    timestamp_ms: int | None = None
    offsets: tuple[tuple[int, int], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Bound:
        """``P:O[,P:O...]`` (partition:offset), epoch milliseconds, or an ISO 8601 time (UTC if no zone)."""
        text = text.strip()
        if _OFFSETS.match(text):
            return cls(offsets=tuple(sorted((int(p), int(o)) for p, o in (pair.split(":") for pair in text.split(",")))))
        if text.isdigit():
            return cls(timestamp_ms=int(text))
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ReplayError(f"bad range bound {text!r}: use P:O[,P:O...], epoch ms, or an ISO 8601 time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return cls(timestamp_ms=int(moment.timestamp() * 1000))

    def describe(self) -> str:
        if self.timestamp_ms is not None:
            return str(self.timestamp_ms)
        return ",".join(f"{p}:{o}" for p, o in self.offsets)


@dataclass(frozen=True)
class ReplayPlan:
    topics: tuple[str, ...]
    start: Bound | None = None
    end: Bound | None = None
    tenants: frozenset[str] = frozenset()
    symbols: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset(ROLES)

    def __post_init__(self) -> None:
        unknown = [t for t in self.topics if t not in TOPIC_HANDLERS]
        if not self.topics or unknown:
            raise ReplayError(f"replay topics must be among {', '.join(TOPIC_HANDLERS)}; got {', '.join(self.topics) or 'none'}")
        bad_roles = self.roles - set(ROLES)
        if not self.roles or bad_roles:
            raise ReplayError(f"--sinks must be among {', '.join(ROLES)}; got {', '.join(sorted(self.roles)) or 'none'}")

    @property
    def id(self) -> str:
        """Stable id of the plan: the name of its progress file."""
        canonical = json.dumps({
            "topics": sorted(self.topics), "start": self.start and self.start.describe(), "end": self.end and self.end.describe(),
            "tenants": sorted(self.tenants), "symbols": sorted(self.symbols), "roles": sorted(self.roles),
        }, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass
class ReplayProgress:
    records: int = 0
    total: int | None = None
    skipped_invalid: int = 0
    filtered_out: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.records / elapsed if elapsed > 0 else 0.0


@dataclass
class ReplayReport:
    plan_id: str
    progress: ReplayProgress
    complete: bool
    resumed: bool
    seconds: float


class ProgressFile:
    """Where a replay stands: next offset and end offset per partition; saved after each checkpoint."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.next: dict[TopicPartition, int] = {}
        self.end: dict[TopicPartition, int] = {}
        self.complete = False

    @staticmethod
    def _key(tp: TopicPartition) -> str:
        return f"{tp.topic}:{tp.partition}"

    @staticmethod
    def _tp(key: str) -> TopicPartition:
        topic, partition = key.rsplit(":", 1)
        return TopicPartition(topic, int(partition))

    def load(self) -> bool:
        """Read a saved, unfinished replay; False when there is none to resume."""
        try:
            state = json.loads(self.path.read_text())
        except FileNotFoundError:
            return False
        if state.get("complete"):
            return False
        self.next = {self._tp(k): v for k, v in state["next"].items()}
        self.end = {self._tp(k): v for k, v in state["end"].items()}
        return True

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps({
            "next": {self._key(tp): v for tp, v in self.next.items()},
            "end": {self._key(tp): v for tp, v in self.end.items()},
            "complete": self.complete,
        }))
        temporary.replace(self.path)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """The checkpoint's committer: everything before these offsets is in the sinks."""
        self.next.update(offsets)
        self.save()


def progress_path(settings: Settings, plan: ReplayPlan) -> Path:
    return settings.state_dir / "replay" / f"{plan.id}.json"


async def replay(settings: Settings, plan: ReplayPlan, *, stop: asyncio.Event, fresh: bool = False,
                 on_progress: Callable[[ReplayProgress], None] | None = None) -> ReplayReport:
    """Run ``plan``; resume a saved unfinished run of the same plan unless ``fresh``."""
    started = time.monotonic()
    state = ProgressFile(progress_path(settings, plan))
    resumed = not fresh and state.load()
    connections = Connections(settings)
    try:
        await connections.start()
    except Exception as exc:  # noqa: BLE001 - explain the usual cause
        await connections.stop()
        hint = ""
        if settings.chdb_path is not None and "lock" in str(exc).lower():
            hint = " (chDB: the running worker owns the data; stop it first, or replay against a ClickHouse server)"
        raise ReplayError(f"cannot open the stores: {type(exc).__name__}: {exc}{hint}") from None
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None, enable_auto_commit=False,
                                max_partition_fetch_bytes=4 << 20, fetch_max_bytes=64 << 20)
    await consumer.start()
    progress = ReplayProgress()
    try:
        publisher = TopicPublisher(lambda: connections.producer)
        sinks = SinkSet(settings, connections, publisher, plan.roles)
        sinks.connect_bars_directly()
        checkpoint = Checkpoint(
            state.commit, sinks.ordered, publisher, sinks.after_publish,
            interval_s=settings.commit_interval_ms / 1000, max_records=settings.commit_max_records,
            stop=stop, max_backoff_s=settings.sink_retry_max_backoff_ms / 1000,
        )
        starts = await _position(consumer, plan, state, resumed)
        await _run(consumer, plan, settings.max_record_bytes, settings.fetch_max_records, sinks, checkpoint, state, starts,
                   progress, stop, on_progress)
        await checkpoint.commit()
        state.complete = not stop.is_set()
        state.save()
    finally:
        await consumer.stop()
        await connections.stop()
    return ReplayReport(plan.id, progress, state.complete, resumed, time.monotonic() - started)


async def _position(consumer: AIOKafkaConsumer, plan: ReplayPlan, state: ProgressFile,
                    resumed: bool) -> dict[TopicPartition, int]:
    """Assign every partition of the plan's topics, seek each to where the replay (re)starts; the start offsets."""
    await consumer.topics()  # refreshes the cluster metadata
    tps = [TopicPartition(topic, p) for topic in plan.topics for p in sorted(consumer.partitions_for_topic(topic) or ())]
    if not tps:
        raise ReplayError(f"no partitions found for {', '.join(plan.topics)}")
    consumer.assign(tps)
    if resumed:
        starts = {tp: state.next.get(tp, 0) for tp in tps}
    else:
        starts = await _offsets_at(consumer, tps, plan.start, default=0)
        state.next = dict(starts)
        state.end = {}
        if plan.end is not None:
            state.end = {tp: o for tp, o in (await _offsets_at(consumer, tps, plan.end, default=None)).items() if o is not None}
    for tp, offset in starts.items():
        consumer.seek(tp, offset)
    return starts


async def _offsets_at(consumer: AIOKafkaConsumer, tps: list[TopicPartition], bound: Bound | None,
                      default: int | None) -> dict[TopicPartition, int | None]:
    if bound is None:
        return {tp: default for tp in tps}
    if bound.timestamp_ms is None:
        given = dict(bound.offsets)
        return {tp: given.get(tp.partition, default) for tp in tps}
    found = await consumer.offsets_for_times({tp: bound.timestamp_ms for tp in tps})
    return {tp: (found[tp].offset if found.get(tp) is not None else default) for tp in tps}


async def _run(consumer: AIOKafkaConsumer, plan: ReplayPlan, max_record_bytes: int, fetch_max_records: int,
               sinks: SinkSet, checkpoint: Checkpoint,
               state: ProgressFile, starts: dict[TopicPartition, int], progress: ReplayProgress, stop: asyncio.Event,
               on_progress: Callable[[ReplayProgress], None] | None) -> None:
    decoders = {topic: BatchDecoder(TOPIC_HANDLERS[topic][0], max_record_bytes) for topic in plan.topics}
    active = {tp for tp, start in starts.items() if tp not in state.end or start < state.end[tp]}
    lo = plan.start.timestamp_ms if plan.start and plan.start.timestamp_ms is not None else None
    hi = plan.end.timestamp_ms if plan.end and plan.end.timestamp_ms is not None else None
    idle_polls = 0
    while active and not stop.is_set():
        fetched = await consumer.getmany(*active, timeout_ms=200, max_records=fetch_max_records)
        idle_polls = 0 if any(fetched.values()) else idle_polls + 1
        for tp, records in fetched.items():
            if tp not in state.end and consumer.highwater(tp) is not None:
                state.end[tp] = consumer.highwater(tp)  # the log end as seen now: a growing topic still ends
            end = state.end.get(tp)
            inside = [r for r in records if (end is None or r.offset < end)]
            selected = [r for r in inside if (lo is None or r.timestamp >= lo) and (hi is None or r.timestamp < hi)]
            decoded = decoders[tp.topic].decode(selected)
            progress.skipped_invalid += len(decoded.rejected)
            messages = [(r, m) for r, m in decoded.valid if _wanted(plan, m)]
            progress.filtered_out += len(decoded.valid) - len(messages)
            for handler in TOPIC_HANDLERS[tp.topic][1]:
                handler(messages, sinks)
            if inside:
                checkpoint.mark(tp, inside[-1].offset + 1, len(inside))
                progress.records += len(inside)
        for tp in list(active):
            end = state.end.get(tp)
            if end is None and consumer.highwater(tp) is not None:
                end = state.end[tp] = consumer.highwater(tp)
            if (end is not None and await consumer.position(tp) >= end) or (end is None and idle_polls >= 10):
                active.discard(tp)
        await checkpoint.flush_eager()
        if checkpoint.due():
            await checkpoint.commit()
        if all(tp in state.end for tp in starts):
            progress.total = sum(max(0, state.end[tp] - start) for tp, start in starts.items())
        if on_progress is not None:
            on_progress(progress)


def _wanted(plan: ReplayPlan, message: object) -> bool:
    return (not plan.tenants or message.tenant in plan.tenants) and (  # type: ignore[attr-defined]
        not plan.symbols or message.symbol in plan.symbols)  # type: ignore[attr-defined]
