"""The log end of every input partition, read on an interval: the reference of honest lag.

A stage's lag is measured from its *committed* offsets to the log end now, so
a paused or stalled stage shows its real backlog (the high-watermark that
arrives with a stage's own fetches stops moving when the stage stops
fetching). The log end is read by a consumer of its own (no group, nothing
committed) that, every ``TICKWIRE_LAG_PROBE_INTERVAL_MS``, seeks each partition
to just before the last end it knew and fetches: the fetch response carries
the partition's high-watermark (the log end), and the last record fetched
gives the newest record's time. (The broker's ListOffsets answer is not used
for the end: tansu's is wrong, see docs/architecture.md; it only gives a
first position to start from.)

Contract: :attr:`LogEnds.ends` holds, per partition, the log end offset and
the newest record's timestamp as of the last probe; a partition not probed yet
is absent. A probe never raises (a broker that does not answer leaves the
last values) and never moves any consumer group.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import Service

from pipeline.config import Settings
from pipeline.core.kafka import client_options
from pipeline.core.kafka import start as kafka_start

log = logging.getLogger("tickwire.lag")

#: How long one probe waits for the partitions' answers.
PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class LogEnd:
    offset: int
    #: timestamp (epoch ms) of the newest record; None for an empty partition
    newest_time_ms: int | None
    #: when this was read (epoch s)
    read_at: float


class LogEnds(Service):
    def __init__(self, settings: Settings, topics: Iterable[str], **kwargs: Any) -> None:  # kwargs: mode's Service options
        self._settings = settings
        self._topics = sorted(set(topics))
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self.ends: dict[TopicPartition, LogEnd] = {}
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            **client_options(self._settings), group_id=None, enable_auto_commit=False,
            auto_offset_reset="latest", client_id="tickwire-log-ends",
            max_partition_fetch_bytes=256 << 10, fetch_max_bytes=4 << 20, fetch_max_wait_ms=50,
        )
        await kafka_start(self._consumer, self._settings)

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def on_started(self) -> None:
        self.add_future(self._probe_forever())

    async def _probe_forever(self) -> None:
        interval = self._settings.lag_probe_interval_ms / 1000
        while not self.should_stop:
            try:
                await self.probe()
            except Exception as exc:  # noqa: BLE001 - the last values stay; the next probe tries again
                log.debug("log-end probe failed: %s", exc)
            await self.sleep(interval)

    async def _assign(self) -> None:
        assert self._consumer is not None
        await self._consumer.topics()  # refresh metadata
        partitions = [TopicPartition(topic, p) for topic in self._topics
                      for p in sorted(self._consumer.partitions_for_topic(topic) or ())]
        if partitions != self._partitions:
            self._consumer.assign(partitions)
            self._partitions = partitions

    async def probe(self) -> None:
        """Read the log end and newest record time of every partition once."""
        if self._consumer is None:
            return
        consumer = self._consumer
        await self._assign()
        if not self._partitions:
            return
        for tp in self._partitions:
            known = self.ends.get(tp)
            if known is None:
                await consumer.seek_to_end(tp)
                start = await consumer.position(tp)
            else:
                start = known.offset
            consumer.seek(tp, max(start - 1, 0))
        consumer.resume(*self._partitions)
        newest: dict[TopicPartition, int] = {}
        waiting = set(self._partitions)
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        while waiting and time.monotonic() < deadline:
            fetched = await consumer.getmany(*waiting, timeout_ms=100, max_records=5_000)
            for tp, records in fetched.items():
                if records:
                    newest[tp] = max(newest.get(tp, 0), max(r.timestamp for r in records))
            for tp in list(waiting):
                end = consumer.highwater(tp)
                if end is not None and await consumer.position(tp) >= end:
                    waiting.discard(tp)
        consumer.pause(*self._partitions)
        now = time.time()
        for tp in self._partitions:
            end = consumer.highwater(tp)
            if end is None:
                continue
            previous = self.ends.get(tp)
            newest_time = newest.get(tp, previous.newest_time_ms if previous is not None else None)
            self.ends[tp] = LogEnd(end, newest_time if end > 0 else None, now)
