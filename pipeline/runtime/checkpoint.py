"""The checkpoint of one stage: when and in what order its consumed offsets become committed.

Order (as in Quix Streams): flush every data sink of the stage, then the
producer (DLQ and derived topics), then the sinks that record what was
published (they must only say so once the broker acknowledged it), then
commit the offsets of the batches processed since the last checkpoint.

A sink that fails is handled by :func:`pipeline.core.retry.flush_until_settled`:
a store that is unavailable opens that sink's circuit and is retried with
jittered backoff while the stage consumes nothing more (the source pauses its
partitions and waits here), so an offset is never committed past a record
that some sink did not durably accept; records the store *refuses* are
dead-lettered (reason ``store_rejected``, with the stage, the sink and the
store's error) and the stage moves on. Where offsets are committed is
pluggable: the stage's consumer group for the worker, a progress file for a
replay. A crash anywhere before the commit redelivers those records; sinks are
idempotent, so that is harmless.

The checkpoint also keeps what the stage's status needs: the last committed
offset and record time per partition, and when the last checkpoint ended; and
it counts for the metrics what each sink durably wrote at each successful
flush (``tickwire_rows_written_total``: what was buffered before it, less what
the store refused) and stamps each commit of offsets
(``tickwire_last_checkpoint_timestamp_seconds``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import OffsetAndMetadata

from pipeline.contracts.topics import DLQ_TOPIC
from pipeline.core.circuit import CircuitBreaker
from pipeline.core.dead_letters import DeadLetterRequest, dead_letter
from pipeline.core.isolation import Refusal
from pipeline.core.metrics import COMMIT_SECONDS, DLQ_RECORDS, LAST_CHECKPOINT, ROWS_WRITTEN, SINK_FLUSH_SECONDS, STORE_REFUSED
from pipeline.core.retry import RetryPolicy, flush_until_settled
from pipeline.sinks.base import Sink
from pipeline.sinks.topic import TopicPublisher

log = logging.getLogger("tickwire.checkpoint")


OffsetCommitter = Callable[[dict[TopicPartition, int]], Awaitable[None]]


def group_committer(consumer: AIOKafkaConsumer) -> OffsetCommitter:
    """Commit to the consumer group (the worker). A commit refused after a rebalance is logged:
    those partitions' records are written (idempotently) and will be redelivered to their new owner."""

    async def commit(offsets: dict[TopicPartition, int]) -> None:
        try:
            await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in offsets.items()})
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("commit after rebalance was refused (%s); records will be redelivered", exc)

    return commit


@dataclass(frozen=True)
class DeadLetterLimits:
    """Size limits of DLQ envelopes (settings ``TICKWIRE_DLQ_MAX_ENVELOPE_BYTES``, ``TICKWIRE_DLQ_VALUE_HEAD_BYTES``)."""

    max_envelope_bytes: int = 262_144
    head_bytes: int = 4_096


@dataclass
class Committed:
    """What was last committed for one partition: the next offset, and the time of the last record before it."""

    offset: int
    record_time_ms: int | None


class Checkpoint:
    def __init__(
        self,
        stage: str,
        commit: OffsetCommitter,
        sinks: Sequence[Sink],
        publisher: TopicPublisher,
        after_publish: Sequence[Sink] = (),
        *,
        interval_s: float,
        max_records: int,
        stop: asyncio.Event,
        policy: RetryPolicy,
        limits: DeadLetterLimits = DeadLetterLimits(),
        on_circuit: Callable[[CircuitBreaker], None] | None = None,
    ) -> None:
        self.stage = stage
        self._commit = commit
        self._sinks = list(sinks)
        self._publisher = publisher
        self._after_publish = list(after_publish)
        self._interval_s = interval_s
        self._max_records = max_records
        self._stop = stop
        self._policy = policy
        self._limits = limits
        self._on_circuit = on_circuit
        self.circuits = {sink.name: CircuitBreaker(sink.name, stage)
                         for sink in [*self._sinks, publisher, *self._after_publish]}
        #: Per sink, the counter of what it durably wrote (every series exists from the start, at 0).
        self._written = {name: ROWS_WRITTEN.labels(stage, name) for name in self.circuits}
        self._offsets: dict[TopicPartition, tuple[int, int | None]] = {}
        self._records = 0
        self._started = time.monotonic()
        #: Checkpoints completed that gave any sink something to write (a checkpoint that wrote nothing
        #: leaves it unchanged): the version of what this stage wrote, for readers that keep answers until
        #: it changes.
        self.commits = 0
        #: Wall-clock time (epoch s) the last checkpoint that committed offsets ended; None before one.
        self.last_commit_at: float | None = None
        #: Per partition, what this process last committed.
        self.committed: dict[TopicPartition, Committed] = {}

    def mark(self, tp: TopicPartition, next_offset: int, records: int, last_record_time_ms: int | None = None) -> None:
        """Record that everything of ``tp`` before ``next_offset`` was handed to the sinks (not yet flushed)."""
        self._offsets[tp] = (next_offset, last_record_time_ms)
        self._records += records

    @property
    def empty(self) -> bool:
        return not self._offsets

    def due(self) -> bool:
        return bool(self._offsets) and (
            self._records >= self._max_records or time.monotonic() - self._started >= self._interval_s
        )

    async def _flush(self, sink: Sink) -> None:
        """Flush ``sink`` until it settles; count what it wrote (what was buffered, less what its store refused)."""
        started = time.perf_counter()
        buffered = sink.pending
        refused = await flush_until_settled(sink, circuit=self.circuits[sink.name], stop=self._stop,
                                            policy=self._policy, on_state=self._on_circuit)
        SINK_FLUSH_SECONDS.labels(self.stage, sink.name).observe(time.perf_counter() - started)
        self._written[sink.name].inc(max(0, buffered - len(refused)))
        if refused:
            await self._dead_letter_refusals(refused)

    async def _dead_letter_refusals(self, refused: list[Refusal]) -> None:
        """Dead-letter each record a store refused (once per record, whatever it fed)."""
        seen: set[tuple[str, int, int]] = set()
        for refusal in refused:
            STORE_REFUSED.labels(self.stage, refusal.sink).inc()
            record = refusal.record
            if record is None:
                log.error("stage %s: %s refused data that has no input record: %s", self.stage, refusal.sink, refusal.error,
                          extra={"stage": self.stage, "sink": refusal.sink})
                continue
            coordinates = (record.topic, record.partition, record.offset)
            if coordinates in seen:
                continue
            seen.add(coordinates)
            log.warning("stage %s: %s refused what %s[%d]@%d led to; dead-lettered: %s", self.stage, refusal.sink,
                        record.topic, record.partition, record.offset, refusal.error[:300],
                        extra={"stage": self.stage, "sink": refusal.sink, "topic": record.topic,
                               "partition": record.partition})
            await self.dead_letter(DeadLetterRequest(record, "store_rejected", f"{refusal.sink}: {refusal.error}", self.stage))

    async def dead_letter(self, request: DeadLetterRequest) -> None:
        """Publish one dead letter (flushed with the producer at the next checkpoint)."""
        key, value = dead_letter(request, max_envelope_bytes=self._limits.max_envelope_bytes,
                                 head_bytes=self._limits.head_bytes)
        await self._publisher.add(DLQ_TOPIC, key, value)
        DLQ_RECORDS.labels(self.stage, request.reason).inc()

    async def flush_eager(self) -> None:
        """Flush the sinks whose data should not wait for a checkpoint (hot keys)."""
        for sink in self._sinks:
            if sink.eager and sink.pending:
                await self._flush(sink)

    async def commit(self) -> None:
        """Flush all sinks, the producer (until every dead letter is out too), the after-publish sinks, then commit
        the offsets marked before this call began (marks made meanwhile wait for the next checkpoint).
        Raises ``Stopping`` if abandoned (the marks are kept)."""
        started = time.perf_counter()
        marked, records = self._offsets, self._records
        self._offsets, self._records, self._started = {}, 0, time.monotonic()
        wrote = any(sink.pending for sink in [*self._sinks, self._publisher, *self._after_publish])
        try:
            for sink in self._sinks:
                await self._flush(sink)
            while self._publisher.pending:
                await self._flush(self._publisher)  # refusals here add dead letters: flush those too
            for sink in self._after_publish:
                await self._flush(sink)
        except BaseException:
            self._offsets, self._records = {**marked, **self._offsets}, records + self._records
            raise
        if marked:
            await self._commit({tp: offset for tp, (offset, _) in marked.items()})
            for tp, (offset, record_time) in marked.items():
                self.committed[tp] = Committed(offset, record_time)
            self.last_commit_at = time.time()
            LAST_CHECKPOINT.labels(self.stage).set(self.last_commit_at)
            COMMIT_SECONDS.labels(self.stage).observe(time.perf_counter() - started)
        if wrote:
            self.commits += 1

    def forget(self, partitions: set[TopicPartition]) -> None:
        """Drop uncommitted offsets of revoked partitions (they will be redelivered)."""
        for tp in partitions:
            self._offsets.pop(tp, None)
            self.committed.pop(tp, None)
