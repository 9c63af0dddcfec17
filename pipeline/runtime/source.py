"""The batch source of one stage: the stage's consume path under its Faust agents.

Each stage has its own source: one aiokafka consumer in the stage's own
consumer group (``<TICKWIRE_GROUP_ID>.<stage>``, auto-commit off) fetching the
stage's input topics with ``getmany``, its own checkpoint, circuits and lag.
So a store outage pauses only the stages that write to it, and a paused stage
catches up from its own committed offsets.

Each fetched topic-partition batch is decoded once (schema and domain checks;
rejects go to the DLQ with their reason and the stage) and goes to every agent
routed to its topic as ONE event on an in-memory Faust channel, so Faust's
per-event machinery costs once per batch instead of once per record. Eager
routes (hot keys) get each batch as soon as it is decoded and their sinks are
flushed right away. The source waits until the agents have handed their
batches to the sinks (records a handler fails on are dead-lettered) and
checkpoints (flush all sinks, producer, commit) on an interval or record count.
Faust's own offset committer is not involved. While a sink's circuit is open,
the stage's partitions are paused; they resume by themselves.

A checkpoint runs as a task of its own while the loop goes on fetching and
decoding (the ClickHouse insert runs in its thread, mostly outside the GIL),
but decoded batches are *held*, not handed to the agents, until it finished:
sinks are never added to while they flush, and a checkpoint commits exactly
the offsets marked before it began. At most ``commit_max_records`` records are
held; then the loop waits for the checkpoint. One checkpoint at a time.

On SIGTERM the loop finishes the batch in hand, checkpoints once more and
stops within ``shutdown_timeout_s``. On a rebalance it checkpoints before the
partitions are revoked.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Sequence

import faust
import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord
from mode import Service

from pipeline.config import Settings
from pipeline.core.batch import RecordBatch
from pipeline.core.circuit import CircuitBreaker
from pipeline.core.codec import BatchDecoder, DecodedBatch
from pipeline.core.dead_letters import DeadLetterRequest
from pipeline.core.domain import DomainRules
from pipeline.core.kafka import KafkaSetupError, client_options
from pipeline.core.kafka import start as kafka_start
from pipeline.core.logs import ContextLogger, set_stage
from pipeline.core.metrics import BATCH_SIZE, RECORDS_CONSUMED
from pipeline.core.retry import RetryPolicy, Stopping
from pipeline.runtime.checkpoint import Checkpoint, DeadLetterLimits, OffsetCommitter, group_committer
from pipeline.sinks.base import Sink
from pipeline.sinks.topic import TopicPublisher

log = logging.getLogger("tickwire.source")


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no types: its base class is Any
    def __init__(self, source: BatchSource) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._source.checkpoint_before_revoke(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._source.stage_log.info("stage %s: assigned %d partitions", self._source.stage, len(assigned))


@dataclass(slots=True)
class _Decoded:
    """One fetched topic-partition batch, decoded, waiting to be handed to the agents."""

    tp: TopicPartition
    decoded: DecodedBatch[msgspec.Struct]
    next_offset: int
    last_time_ms: int

    @property
    def records(self) -> int:
        return len(self.decoded.valid) + len(self.decoded.rejected)

    async def deliver(self, channels: list[faust.ChannelT[RecordBatch[msgspec.Struct]]]) -> RecordBatch[msgspec.Struct]:
        """Send the valid records to ``channels`` as one batch; its ``done`` resolves once every agent took it."""
        batch = RecordBatch(self.tp.topic, self.tp.partition, self.decoded.valid, self.next_offset)
        channels = channels if self.decoded.valid else []
        batch.expect(len(channels))
        for channel in channels:
            await channel.send(value=batch)
        return batch


def stage_group(settings: Settings, stage: str) -> str:
    """The consumer group of ``stage``: ``<TICKWIRE_GROUP_ID>.<stage>``."""
    return f"{settings.group_id}.{stage}"


class BatchSource(Service):
    def __init__(self, app: faust.App, stage: str, settings: Settings, sinks: Sequence[Sink], publisher: TopicPublisher,
                 after_publish: Sequence[Sink] = (), *, fetch_max_wait_ms: int | None = None,
                 **kwargs: Any) -> None:  # kwargs: mode's Service options
        """``fetch_max_wait_ms``: how long the broker may hold a fetch (default: the ``fetch_max_wait_ms`` setting)."""
        self.app = app
        self.stage = stage
        self._fetch_max_wait_ms = settings.fetch_max_wait_ms if fetch_max_wait_ms is None else fetch_max_wait_ms
        #: The module's logger, every record with this stage (``stage`` field of the JSON log).
        self.stage_log = ContextLogger(log, {"stage": stage})
        self.settings = settings
        self.publisher = publisher
        self._sinks = list(sinks)
        self._after_publish = list(after_publish)
        self._routes: dict[str, list[faust.ChannelT[RecordBatch[msgspec.Struct]]]] = {}
        self._eager_routes: dict[str, list[faust.ChannelT[RecordBatch[msgspec.Struct]]]] = {}
        self._decoders: dict[str, BatchDecoder[msgspec.Struct]] = {}
        self._rules = DomainRules.from_settings(settings)
        self._stop_event = asyncio.Event()
        self._positions: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._inflight: asyncio.Task[None] | None = None  # the running checkpoint, if any
        self._held: list[_Decoded] = []  # decoded while a checkpoint ran, not yet handed to the agents
        self.consumer: AIOKafkaConsumer | None = None
        self.checkpoint = Checkpoint(
            stage, self._commit_offsets, self._sinks, publisher, self._after_publish,
            interval_s=settings.commit_interval_ms / 1000, max_records=settings.commit_max_records,
            stop=self._stop_event,
            policy=RetryPolicy(settings.sink_retry_max_backoff_ms / 1000, settings.unknown_error_attempts),
            limits=DeadLetterLimits(settings.dlq_max_envelope_bytes, settings.dlq_value_head_bytes),
            on_circuit=self._pause_while_open,
        )
        self._committer: OffsetCommitter | None = None
        #: True once the consumer runs.
        self.consuming = False
        super().__init__(**kwargs)

    @property
    def topics(self) -> list[str]:
        """The input topics of this stage."""
        return list(self._decoders)

    def route(
        self, topic: str, message_type: type[msgspec.Struct], *, eager: bool = False
    ) -> faust.ChannelT[RecordBatch[msgspec.Struct]]:
        """A new channel on which decoded batches of ``topic`` are delivered to one agent.

        Every agent routed to a topic gets every batch of it; the topic is decoded once,
        into ``message_type`` (the same for all routes of a topic). An ``eager`` route gets
        each batch as soon as it is decoded, even while a checkpoint runs, and the eager
        sinks are flushed right after: its agent may only add to eager sinks, which accept
        adds while they flush (the hot cache). Other routes get the batch once no
        checkpoint runs.
        """
        decoder = self._decoders.setdefault(topic, BatchDecoder(message_type, self.settings.max_record_bytes, self._rules))
        if decoder.message_type is not message_type:
            raise TypeError(f"{topic} is already decoded as {decoder.message_type.__name__}")
        channel = self.app.channel(maxsize=64)
        (self._eager_routes if eager else self._routes).setdefault(topic, []).append(channel)
        return channel

    async def _commit_offsets(self, offsets: dict[TopicPartition, int]) -> None:
        assert self._committer is not None
        await self._committer(offsets)

    async def on_started(self) -> None:
        """Start consuming in the background: the group join takes seconds (half the session timeout on
        tansu), and the stages of a worker join their groups at the same time, not one after the other."""
        self.consumer = AIOKafkaConsumer(
            **client_options(self.settings),
            group_id=stage_group(self.settings, self.stage),
            client_id=f"tickwire-{self.stage}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self.settings.session_timeout_ms,
            heartbeat_interval_ms=max(self.settings.session_timeout_ms // 5, 500),
            max_poll_interval_ms=3_600_000,
            max_partition_fetch_bytes=4 << 20,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
            fetch_max_bytes=64 << 20,
        )
        self.consumer.subscribe(topics=list(self._decoders), listener=_Rebalance(self))
        self._committer = group_committer(self.consumer)
        self._task = asyncio.create_task(self._consume(), name=f"tickwire-source-{self.stage}")

    async def _consume(self) -> None:
        assert self.consumer is not None
        set_stage(self.stage)  # what this task and those it starts log (the consumer's, the checkpoints') is this stage's
        try:
            await kafka_start(self.consumer, self.settings)
            self.consuming = True
            self.stage_log.info("stage %s consuming %s as group %s", self.stage, ", ".join(self._decoders),
                     stage_group(self.settings, self.stage))
            while not self._stop_event.is_set():
                if self._inflight is None or self._held_records < self.settings.commit_max_records:
                    fetched = await self.consumer.getmany(
                        timeout_ms=self.settings.fetch_timeout_ms, max_records=self.settings.fetch_max_records
                    )
                    await self._hold(fetched)
                if self._inflight is not None:
                    if not self._inflight.done() and self._held_records < self.settings.commit_max_records:
                        continue
                    inflight, self._inflight = self._inflight, None
                    await inflight  # raises what the checkpoint raised (Stopping)
                async with self._lock:
                    await self._hand_off_held()
                    if self.checkpoint.due():
                        self._inflight = asyncio.create_task(self._checkpoint(), name=f"tickwire-checkpoint-{self.stage}")
            if self._inflight is not None:
                await self._inflight
            async with self._lock:
                await self._hand_off_held()
                await self.checkpoint.commit()
            self.stage_log.info("stage %s stopped after a final checkpoint", self.stage)
        except Stopping as exc:
            self.stage_log.warning("stage %s stopped while %s was unavailable; uncommitted records will be redelivered",
                                   self.stage, exc)
        except KafkaSetupError as exc:
            self.stage_log.error("stage %s cannot consume: %s", self.stage, exc)
            await self.crash(exc)
        except Exception as exc:
            self.stage_log.exception("stage %s failed; nothing past its last checkpoint was committed", self.stage)
            await self.crash(exc)

    async def _checkpoint(self) -> None:
        async with self._lock:
            await self.checkpoint.commit()

    async def _hold(self, fetched: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Decode what was fetched, give it to the eager routes (and flush the eager sinks),
        and keep it until it can be handed to the other agents."""
        eager = []
        for tp, records in fetched.items():
            if not records:
                continue
            RECORDS_CONSUMED.labels(self.stage, tp.topic).inc(len(records))
            BATCH_SIZE.labels(self.stage, tp.topic).observe(len(records))
            item = _Decoded(tp, self._decoders[tp.topic].decode(records), records[-1].offset + 1, records[-1].timestamp)
            self._held.append(item)
            if tp.topic in self._eager_routes:
                eager.append(await item.deliver(self._eager_routes[tp.topic]))
        for batch in eager:
            await batch.done
        if eager:
            await self.checkpoint.flush_eager()

    @property
    def _held_records(self) -> int:
        return sum(item.records for item in self._held)

    async def _hand_off_held(self) -> None:
        """Dead-letter the rejects, hand every held batch to its (non-eager) agents, wait until they
        took them, dead-letter what a handler failed on, and mark the offsets for the next checkpoint.
        Call with the lock held."""
        if not self._held:
            return
        held, self._held = self._held, []
        batches = []
        for item in held:
            for rejected in item.decoded.rejected:
                await self.checkpoint.dead_letter(DeadLetterRequest(rejected.record, rejected.reason, rejected.error, self.stage))
            batches.append((item, await item.deliver(self._routes.get(item.tp.topic, []))))
        for item, batch in batches:
            await batch.done
            for record, error in batch.failed:
                self.stage_log.warning("stage %s: processing failed for %s[%d]@%d; dead-lettered: %s", self.stage,
                                       record.topic, record.partition, record.offset, error[:300],
                                       extra={"topic": record.topic, "partition": record.partition})
                await self.checkpoint.dead_letter(DeadLetterRequest(record, "processing_error", error, self.stage))
            self.checkpoint.mark(item.tp, batch.next_offset, item.records, item.last_time_ms)
            self._positions[item.tp] = batch.next_offset

    def _pause_while_open(self, circuit: CircuitBreaker) -> None:
        """Stop fetching while any sink's circuit is open; resume when all are closed."""
        if self.consumer is None:
            return
        partitions = self.consumer.assignment()
        if any(c.state == "open" for c in self.checkpoint.circuits.values()):
            self.consumer.pause(*partitions)
        else:
            self.consumer.resume(*partitions)

    def assignment(self) -> set[TopicPartition]:
        """The partitions this process consumes for the stage now."""
        return set(self.consumer.assignment()) if self.consumer is not None else set()

    async def checkpoint_before_revoke(self, revoked: set[TopicPartition]) -> None:
        self._held = [item for item in self._held if item.tp not in revoked]
        try:
            async with asyncio.timeout(self.settings.shutdown_timeout_s):
                async with self._lock:
                    await self.checkpoint.commit()
        except (TimeoutError, Stopping):
            self.stage_log.warning("stage %s: no checkpoint before revoke; %d partitions will be redelivered from their "
                                   "last commit", self.stage, len(revoked))
        self.checkpoint.forget(revoked)

    async def drain(self) -> None:
        """Stop fetching, finish the batch in hand and checkpoint, within ``shutdown_timeout_s``.

        Must run before Faust suspends its flow control at shutdown (the app calls it first
        thing in its ``on_stop``): the agents still have to take the batch in hand.
        """
        self._stop_event.set()
        if self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=self.settings.shutdown_timeout_s)
            except asyncio.TimeoutError:
                self.stage_log.warning("stage %s: final checkpoint did not finish in %.0f s; abandoning it", self.stage,
                                       self.settings.shutdown_timeout_s)
                self._task.cancel()

    async def on_stop(self) -> None:
        await self.drain()
        if self.consumer is not None:
            await self.consumer.stop()
        for sink in [*self._sinks, *self._after_publish]:
            await sink.close()
