"""Replay: re-run retained records through the pipeline's stages, for backfill.

A replay runs the stages of the topology (:mod:`pipeline.runtime.topology`),
upstream first, each over its own input topics, with the same decoders and
domain checks, the same handlers and the same sinks (limited to the chosen
roles) as the live worker: one routing table. It reads without a consumer
group (the live groups' offsets never move). Downstream stages read what
upstream stages publish (``candles.v1``, ``signals.enriched.v1``), including
what the replay itself republished; every sink is idempotent, so replaying a
range twice changes nothing, and replaying into empty stores rebuilds them as
the live pipeline built them.

Range: ``start``/``end`` are a record timestamp (epoch ms, the Kafka record
time) or per-partition offsets, applied to every stage's inputs; the end
defaults to the log end seen when the replay reaches each partition (from
fetch high-watermarks: tansu's ListOffsets end is wrong). Records that fail
to decode are counted and skipped (the live pipeline already dead-lettered them).

Progress is checkpointed per stage like the worker's offsets (sinks flushed
first) to ``<state_dir>/replay/<plan id>.json``; running the same plan again
resumes from there (finished stages are not run again). A stop request
(Ctrl-C) finishes the batch in hand, checkpoints and returns.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.config import STAGE_NAMES, Settings
from pipeline.core.batch import run_isolating
from pipeline.core.codec import BatchDecoder
from pipeline.core.domain import DomainRules
from pipeline.core.kafka import client_options
from pipeline.core.retry import RetryPolicy
from pipeline.runtime.app import GC_GEN0_THRESHOLD
from pipeline.runtime.checkpoint import Checkpoint, DeadLetterLimits
from pipeline.runtime.topology import ROLES, StageResources, StageSinks, StageSpec, after_publish, stages
from pipeline.sinks.topic import TopicPublisher
from pipeline.stores.connections import Connections

_OFFSETS = re.compile(r"^\d+:\d+(,\d+:\d+)*$")
#: A partition whose log end no fetch has told yet (no answer from its broker) counts as ended after this long
#: without records (ends are learnt from fetched high-watermarks: tansu's ListOffsets end is wrong).
UNKNOWN_END_AFTER_S = 2.0


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
    stages: tuple[str, ...] = STAGE_NAMES
    start: Bound | None = None
    end: Bound | None = None
    tenants: frozenset[str] = frozenset()
    symbols: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset(ROLES)

    def __post_init__(self) -> None:
        unknown = [s for s in self.stages if s not in STAGE_NAMES]
        if not self.stages or unknown:
            raise ReplayError(f"--stages must be among {', '.join(STAGE_NAMES)}; got {', '.join(self.stages) or 'none'}")
        bad_roles = self.roles - set(ROLES)
        if not self.roles or bad_roles:
            raise ReplayError(f"--sinks must be among {', '.join(ROLES)}; got {', '.join(sorted(self.roles)) or 'none'}")

    @property
    def id(self) -> str:
        """Stable id of the plan: the name of its progress file."""
        canonical = json.dumps({
            "stages": [s for s in STAGE_NAMES if s in self.stages], "start": self.start and self.start.describe(),
            "end": self.end and self.end.describe(), "tenants": sorted(self.tenants), "symbols": sorted(self.symbols),
            "roles": sorted(self.roles),
        }, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass
class ReplayProgress:
    stage: str = ""
    records: int = 0
    total: int | None = None
    skipped_invalid: int = 0
    filtered_out: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)
    #: when the stage's last checkpoint ended (None while it runs)
    ended: float | None = None

    @property
    def seconds(self) -> float:
        """From the stage's start (its consumer starting) to its last checkpoint, or to now while it runs."""
        return (self.ended if self.ended is not None else time.monotonic()) - self.started

    @property
    def rate(self) -> float:
        elapsed = self.seconds
        return self.records / elapsed if elapsed > 0 else 0.0


@dataclass
class ReplayReport:
    plan_id: str
    #: per stage, in the order they ran
    progress: list[ReplayProgress]
    complete: bool
    resumed: bool
    seconds: float

    @property
    def records(self) -> int:
        return sum(p.records for p in self.progress)


class StageProgress:
    """Where one stage of a replay stands: next offset and end offset per partition."""

    def __init__(self, owner: ProgressFile) -> None:
        self._owner = owner
        self.next: dict[TopicPartition, int] = {}
        self.end: dict[TopicPartition, int] = {}
        self.complete = False

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """The checkpoint's committer: everything before these offsets is in the sinks."""
        self.next.update(offsets)
        self._owner.save()


class ProgressFile:
    """Where a replay stands, per stage; saved after each checkpoint (written to a temporary file, then renamed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stages: dict[str, StageProgress] = {}
        self.complete = False

    @staticmethod
    def _key(tp: TopicPartition) -> str:
        return f"{tp.topic}:{tp.partition}"

    @staticmethod
    def _tp(key: str) -> TopicPartition:
        topic, partition = key.rsplit(":", 1)
        return TopicPartition(topic, int(partition))

    def stage(self, name: str) -> StageProgress:
        return self.stages.setdefault(name, StageProgress(self))

    def load(self) -> bool:
        """Read a saved, unfinished replay; False when there is none to resume."""
        try:
            state = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return False
        if state.get("complete") or not isinstance(state.get("stages"), dict):
            return False
        for name, saved in state["stages"].items():
            stage = self.stage(name)
            stage.next = {self._tp(k): v for k, v in saved["next"].items()}
            stage.end = {self._tp(k): v for k, v in saved["end"].items()}
            stage.complete = bool(saved["complete"])
        return True

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps({
            "stages": {name: {"next": {self._key(tp): v for tp, v in s.next.items()},
                              "end": {self._key(tp): v for tp, v in s.end.items()}, "complete": s.complete}
                       for name, s in self.stages.items()},
            "complete": self.complete,
        }))
        temporary.replace(self.path)


def progress_path(settings: Settings, plan: ReplayPlan) -> Path:
    return settings.state_dir / "replay" / f"{plan.id}.json"


@contextmanager
def _collector_tuned() -> Iterator[None]:
    """The live worker's garbage collector settings (:class:`pipeline.runtime.app.TickwireApp`) while replaying:
    the heap of the start-up (modules, clients, stores) frozen out of the collector's view and the youngest
    generation's threshold raised, so the records of each batch do not set off collections over the whole heap.
    Restored afterwards."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


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
        if settings.chdb_path is not None and any(word in str(exc).lower() for word in ("lock", "bad_arguments", "code: 36")):
            hint = " (chDB: the running worker owns the data; stop it first, or replay against a ClickHouse server)"
        raise ReplayError(f"cannot open the stores: {type(exc).__name__}: {exc}{hint}") from None
    reports: list[ReplayProgress] = []
    try:
        with _collector_tuned():
            for spec in stages(plan.stages):
                stage_state = state.stage(spec.name)
                if stage_state.complete:
                    continue
                progress = ReplayProgress(stage=spec.name)
                reports.append(progress)
                await _replay_stage(settings, spec, plan, connections, stage_state, resumed and bool(stage_state.next),
                                    progress, stop, on_progress)
                if stop.is_set():
                    break
                stage_state.complete = True
                state.save()
        state.complete = not stop.is_set() and all(state.stage(name).complete for name in plan.stages)
        state.save()
    finally:
        await connections.stop()
    return ReplayReport(plan.id, reports, state.complete, resumed, time.monotonic() - started)


async def _replay_stage(settings: Settings, spec: StageSpec, plan: ReplayPlan, connections: Connections,
                        state: StageProgress, resumed: bool, progress: ReplayProgress, stop: asyncio.Event,
                        on_progress: Callable[[ReplayProgress], None] | None) -> None:
    publisher = TopicPublisher(lambda: connections.producer)
    sinks = spec.build(StageResources(spec.name, settings, connections, publisher, plan.roles))
    checkpoint = Checkpoint(
        spec.name, state.commit, sinks.ordered, publisher, after_publish(sinks),
        interval_s=settings.commit_interval_ms / 1000, max_records=settings.commit_max_records, stop=stop,
        policy=RetryPolicy(settings.sink_retry_max_backoff_ms / 1000, settings.unknown_error_attempts),
        limits=DeadLetterLimits(settings.dlq_max_envelope_bytes, settings.dlq_value_head_bytes),
    )
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=None, enable_auto_commit=False,
                                client_id=f"tickwire-replay-{spec.name}", fetch_max_wait_ms=settings.fetch_max_wait_ms,
                                max_partition_fetch_bytes=4 << 20, fetch_max_bytes=64 << 20)
    await consumer.start()
    try:
        starts = await _position(consumer, spec.inputs, plan, state, resumed)
        await _run(consumer, spec, plan, settings, sinks, checkpoint, state, starts, progress, stop, on_progress)
        await checkpoint.commit()
        progress.ended = time.monotonic()
    finally:
        await consumer.stop()


async def _position(consumer: AIOKafkaConsumer, topics: tuple[str, ...], plan: ReplayPlan, state: StageProgress,
                    resumed: bool) -> dict[TopicPartition, int]:
    """Assign every partition of ``topics``, seek each to where the stage (re)starts; the start offsets."""
    await consumer.topics()  # refreshes the cluster metadata
    tps = [TopicPartition(topic, p) for topic in topics for p in sorted(consumer.partitions_for_topic(topic) or ())]
    if not tps:
        return {}
    consumer.assign(tps)
    if resumed:
        starts = {tp: state.next.get(tp, 0) for tp in tps}
    else:
        starts = {tp: offset or 0 for tp, offset in (await _offsets_at(consumer, tps, plan.start, default=0)).items()}
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


@dataclass(slots=True)
class _Held:
    """One fetched topic-partition batch, decoded and filtered, waiting to be handed to the handlers."""

    tp: TopicPartition
    messages: list[tuple[Any, Any]]
    next_offset: int
    records: int
    last_time_ms: int


class _Reader:
    """Fetches, decodes and filters a stage's inputs up to the range's end; says which partitions are done."""

    def __init__(self, consumer: AIOKafkaConsumer, spec: StageSpec, plan: ReplayPlan, settings: Settings,
                 state: StageProgress, starts: dict[TopicPartition, int], progress: ReplayProgress) -> None:
        rules = DomainRules.from_settings(settings)
        self._consumer = consumer
        self._decoders = {route.topic: BatchDecoder(route.message_type, settings.max_record_bytes, rules)
                          for route in spec.routes}
        self._plan = plan
        self._state = state
        self._progress = progress
        self._max_records = settings.fetch_max_records
        self._timeout_ms = settings.fetch_timeout_ms
        self._lo = plan.start.timestamp_ms if plan.start and plan.start.timestamp_ms is not None else None
        self._hi = plan.end.timestamp_ms if plan.end and plan.end.timestamp_ms is not None else None
        self._filtered = bool(plan.tenants or plan.symbols)
        self.active = {tp for tp, start in starts.items() if tp not in state.end or start < state.end[tp]}
        self._last_records = time.monotonic()

    async def fetch(self) -> list[_Held]:
        """One ``getmany`` over the active partitions, decoded (rejects counted and skipped) and filtered."""
        fetched = await self._consumer.getmany(*self.active, timeout_ms=self._timeout_ms, max_records=self._max_records)
        if any(fetched.values()):
            self._last_records = time.monotonic()
        held = []
        for tp, records in fetched.items():
            if tp not in self._state.end and self._consumer.highwater(tp) is not None:
                self._state.end[tp] = self._consumer.highwater(tp)  # the log end as seen now: a growing topic still ends
            end = self._state.end.get(tp)
            if not records:
                continue
            inside = records if end is None or records[-1].offset < end else [r for r in records if r.offset < end]
            if not inside:
                continue
            selected = inside
            if self._lo is not None or self._hi is not None:
                lo, hi = self._lo, self._hi
                selected = [r for r in inside if (lo is None or r.timestamp >= lo) and (hi is None or r.timestamp < hi)]
            decoded = self._decoders[tp.topic].decode(selected)
            self._progress.skipped_invalid += len(decoded.rejected)
            messages = decoded.valid
            if self._filtered:
                messages = [(r, m) for r, m in messages if _wanted(self._plan, m)]
                self._progress.filtered_out += len(decoded.valid) - len(messages)
            held.append(_Held(tp, messages, inside[-1].offset + 1, len(inside), inside[-1].timestamp))
        await self._retire_finished()
        return held

    async def _retire_finished(self) -> None:
        silent = time.monotonic() - self._last_records >= UNKNOWN_END_AFTER_S
        for tp in list(self.active):
            end = self._state.end.get(tp)
            if end is None and self._consumer.highwater(tp) is not None:
                end = self._state.end[tp] = self._consumer.highwater(tp)
            if (end is not None and await self._consumer.position(tp) >= end) or (end is None and silent):
                self.active.discard(tp)


async def _run(consumer: AIOKafkaConsumer, spec: StageSpec, plan: ReplayPlan, settings: Settings, sinks: StageSinks,
               checkpoint: Checkpoint, state: StageProgress, starts: dict[TopicPartition, int], progress: ReplayProgress,
               stop: asyncio.Event, on_progress: Callable[[ReplayProgress], None] | None) -> None:
    """Replay the stage's inputs from ``starts`` to their ends, then hand off what is held (the caller checkpoints).

    As in the live source (:mod:`pipeline.runtime.source`), a checkpoint runs as a task while the next batches
    are fetched and decoded; they are held, not handed to the handlers, until it ended (no sink is added to while
    it flushes, and it saves exactly the offsets marked before it began). At most ``commit_max_records`` records
    are held; then the loop waits for the checkpoint.
    """
    handlers: dict[str, list[Any]] = {}
    for route in spec.routes:
        handlers.setdefault(route.topic, []).append(route.handler)
    reader = _Reader(consumer, spec, plan, settings, state, starts, progress)
    held: list[_Held] = []
    inflight: asyncio.Task[None] | None = None

    async def hand_off() -> None:
        for item in held:
            for handler in handlers[item.tp.topic]:
                progress.failed += len(run_isolating(handler, item.messages, sinks))
            checkpoint.mark(item.tp, item.next_offset, item.records, item.last_time_ms)
            progress.records += item.records
        held.clear()
        await checkpoint.flush_eager()

    try:
        while reader.active and not stop.is_set():
            if inflight is None or sum(item.records for item in held) < settings.commit_max_records:
                held += await reader.fetch()
            if inflight is not None:
                if not inflight.done() and sum(item.records for item in held) < settings.commit_max_records:
                    continue
                finished, inflight = inflight, None
                await finished  # raises what the checkpoint raised (Stopping)
            await hand_off()
            if checkpoint.due():
                inflight = asyncio.create_task(checkpoint.commit(), name=f"tickwire-replay-checkpoint-{spec.name}")
            if all(tp in state.end for tp in starts):
                progress.total = sum(max(0, state.end[tp] - start) for tp, start in starts.items())
            if on_progress is not None:
                on_progress(progress)
        if inflight is not None:
            finished, inflight = inflight, None
            await finished
        await hand_off()
    finally:
        if inflight is not None:  # failed while a checkpoint ran: it saves nothing more
            inflight.cancel()
            await asyncio.gather(inflight, return_exceptions=True)


def _series(message: Any) -> tuple[str, str]:
    """(tenant, symbol) of a decoded message of any input topic."""
    inner = getattr(message, "signal", message)
    return inner.tenant, inner.symbol


def _wanted(plan: ReplayPlan, message: Any) -> bool:
    tenant, symbol = _series(message)
    return (not plan.tenants or tenant in plan.tenants) and (not plan.symbols or symbol in plan.symbols)
