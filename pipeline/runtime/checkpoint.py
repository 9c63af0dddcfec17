"""The checkpoint: when and in what order consumed offsets become committed.

Order (as in Quix Streams): flush every data sink, then the producer (DLQ and
derived topics), then the sinks that record what was published (they must
only say so once the broker acknowledged it), then commit the offsets of the batches processed since the
last checkpoint. A failing flush opens that sink's circuit and is retried
with backoff while nothing is consumed (the source pauses its partitions and
waits here), so an offset is never committed past a record that some sink did
not durably accept. Where offsets are committed is pluggable: the consumer
group for the worker, a progress file for a replay. A crash anywhere before the
commit redelivers those records; sinks are idempotent, so that is harmless.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import OffsetAndMetadata

from pipeline.core.circuit import CircuitBreaker
from pipeline.core.metrics import COMMIT_SECONDS, SINK_FLUSH_SECONDS
from pipeline.core.retry import retry_until_done
from pipeline.sinks.base import Sink

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


class Checkpoint:
    def __init__(
        self,
        commit: OffsetCommitter,
        sinks: Sequence[Sink],
        producer_sink: Sink,
        after_publish: Sequence[Sink] = (),
        *,
        interval_s: float,
        max_records: int,
        stop: asyncio.Event,
        max_backoff_s: float,
        on_circuit: Callable[[CircuitBreaker], None] | None = None,
    ) -> None:
        self._commit = commit
        self._sinks = list(sinks)
        self._producer_sink = producer_sink
        self._after_publish = list(after_publish)
        self._interval_s = interval_s
        self._max_records = max_records
        self._stop = stop
        self._max_backoff_s = max_backoff_s
        self._on_circuit = on_circuit
        self.circuits = {sink.name: CircuitBreaker(sink.name) for sink in [*self._sinks, producer_sink, *self._after_publish]}
        self._offsets: dict[TopicPartition, int] = {}
        self._records = 0
        self._started = time.monotonic()
        #: Checkpoints completed (sinks flushed, offsets if any committed): the version of what
        #: this pipeline wrote, for readers that keep answers until it changes.
        self.commits = 0

    def mark(self, tp: TopicPartition, next_offset: int, records: int) -> None:
        """Record that everything of ``tp`` before ``next_offset`` was handed to the sinks (not yet flushed)."""
        self._offsets[tp] = next_offset
        self._records += records

    @property
    def empty(self) -> bool:
        return not self._offsets

    def due(self) -> bool:
        return bool(self._offsets) and (
            self._records >= self._max_records or time.monotonic() - self._started >= self._interval_s
        )

    async def _flush(self, sink: Sink) -> None:
        started = time.perf_counter()
        await retry_until_done(sink.flush, circuit=self.circuits[sink.name], stop=self._stop,
                               max_backoff_s=self._max_backoff_s, on_state=self._on_circuit)
        SINK_FLUSH_SECONDS.labels(sink.name).observe(time.perf_counter() - started)

    async def flush_eager(self) -> None:
        """Flush the sinks whose data should not wait for a checkpoint (hot keys)."""
        for sink in self._sinks:
            if sink.eager and sink.pending:
                await self._flush(sink)

    async def commit(self) -> None:
        """Flush all sinks, the producer, the after-publish sinks, then commit. Raises ``Stopping`` if abandoned."""
        started = time.perf_counter()
        for sink in self._sinks:
            await self._flush(sink)
        await self._flush(self._producer_sink)
        for sink in self._after_publish:
            await self._flush(sink)
        offsets = self._offsets
        self._offsets, self._records, self._started = {}, 0, time.monotonic()
        if offsets:
            await self._commit(offsets)
            COMMIT_SECONDS.observe(time.perf_counter() - started)
        self.commits += 1

    def forget(self, partitions: set[TopicPartition]) -> None:
        """Drop uncommitted offsets of revoked partitions (they will be redelivered)."""
        for tp in partitions:
            self._offsets.pop(tp, None)
