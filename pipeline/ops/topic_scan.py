"""Reading topics without a consumer group (operator views, the DLQ tools, the demo).

:func:`scan_topic` reads a whole topic from its start to its end as seen when the
scan reaches each partition: the high watermark reported with that partition's
first fetch (tansu answers ListOffsets wrongly, so it is not asked). Records
produced after that (e.g. dead letters of records being retried) are not
part of the scan, so a scan always ends. :class:`RecordReader` reads single
records at given offsets. Nothing here commits anything.

Clients get their connection options from :func:`pipeline.core.kafka.client_options`
(a caller that still passes a list of ``host:port`` gets just those), with
bounded request timeouts: a broker that cannot be reached, or that stops
answering, raises :class:`BrokerUnavailable` within about ``REQUEST_TIMEOUT_MS``
per bootstrap server, or ``stall_timeout_s`` into a scan, never later. Clients
are always stopped, also when their start fails.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError, OffsetOutOfRangeError
from aiokafka.structs import ConsumerRecord

from pipeline.config import Settings
from pipeline.core.kafka import client_options

__all__ = ["BrokerUnavailable", "RecordReader", "ReadResult", "count_records", "open_consumer", "scan_topic"]

#: A request (connect, metadata, fetch) unanswered for this long fails.
REQUEST_TIMEOUT_MS = 10_000
#: The broker may hold a fetch with nothing new for this long (aiokafka's default is 500).
FETCH_MAX_WAIT_MS = 100
#: A scan or read that makes no progress for this long gives up (the broker stopped answering).
STALL_TIMEOUT_S = 30.0

Source = Settings | Sequence[str]


class BrokerUnavailable(RuntimeError):
    """The broker could not be reached, or stopped answering; ``servers`` and ``cause`` say which and why."""

    def __init__(self, servers: Sequence[str], cause: str) -> None:
        super().__init__(f"cannot reach the Kafka broker at {','.join(servers)}: {cause}")
        self.servers = list(servers)
        self.cause = cause


def _connection(source: Source) -> dict[str, Any]:
    if isinstance(source, Settings):
        return client_options(source)
    return {"bootstrap_servers": list(source)}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {REQUEST_TIMEOUT_MS / 1000:g} s"
    text = str(exc).split(": ", 1)[-1] if isinstance(exc, KafkaError) else str(exc)
    if "Unable to bootstrap" in text:
        return "connection refused or no answer"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@asynccontextmanager
async def open_consumer(source: Source, **options: Any) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer without a group (stopped on exit, also when its start fails).

    Raises :class:`BrokerUnavailable` when the broker cannot be reached.
    """
    connection = _connection(source)
    consumer = AIOKafkaConsumer(**{
        **connection, "group_id": None, "enable_auto_commit": False, "request_timeout_ms": REQUEST_TIMEOUT_MS,
        "fetch_max_wait_ms": FETCH_MAX_WAIT_MS, **options,
    })
    try:
        try:
            async with asyncio.timeout(2 * REQUEST_TIMEOUT_MS / 1000 * max(1, len(connection["bootstrap_servers"]))):
                await consumer.start()
        except (KafkaError, OSError, TimeoutError) as exc:
            raise BrokerUnavailable(connection["bootstrap_servers"], _describe(exc)) from exc
        yield consumer
    finally:
        await asyncio.sleep(0)  # let the tasks start() created run once: stopping one never run raises (aiokafka)
        await consumer.stop()


async def scan_topic(source: Source, topic: str, *, max_records: int = 10_000,
                     stall_timeout_s: float = STALL_TIMEOUT_S) -> AsyncIterator[list[ConsumerRecord]]:
    """Yield the records of ``topic`` in fetched batches, from the beginning to its end (see the module docstring).

    A missing topic yields nothing. Raises :class:`BrokerUnavailable` when the broker
    cannot be reached or no record arrives for ``stall_timeout_s`` before the end.
    """
    async with open_consumer(source) as consumer:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends: dict[TopicPartition, int] = {}
        active = set(tps)
        progressed = time.monotonic()
        while active:
            fetched = await consumer.getmany(*active, timeout_ms=200, max_records=max_records)
            for tp in active:
                if tp not in ends and (highwater := consumer.highwater(tp)) is not None:
                    ends[tp] = highwater  # set with the partition's first fetch, before its records are returned
            records = [r for tp, batch in fetched.items() for r in batch if r.offset < ends.get(tp, 0)]
            if records:
                progressed = time.monotonic()
                yield records
            for tp in [tp for tp in active if tp in ends]:
                if await consumer.position(tp) >= ends[tp]:
                    active.discard(tp)
                    consumer.pause(tp)
            if active and time.monotonic() - progressed > stall_timeout_s:
                raise BrokerUnavailable(_connection(source)["bootstrap_servers"],
                                        f"no records of {topic} for {stall_timeout_s:g} s before its end")


async def count_records(source: Source, topic: str) -> int:
    """How many records ``topic`` holds now."""
    return sum([len(batch) async for batch in scan_topic(source, topic)])


@dataclass(frozen=True, slots=True)
class ReadResult:
    """The record at the asked offset, or ``None`` and why it is not there (``missing``)."""

    record: ConsumerRecord | None
    missing: str = ""


class RecordReader:
    """Reads single records by topic/partition/offset with one consumer. Use ``async with``."""

    def __init__(self, source: Source, *, max_record_bytes: int = 64 << 20, timeout_s: float = STALL_TIMEOUT_S) -> None:
        self._source = source
        self._timeout_s = timeout_s
        self._options = {"auto_offset_reset": "none", "max_partition_fetch_bytes": max_record_bytes,
                         "fetch_max_bytes": max_record_bytes}
        self._opened: Any = None
        self._topics: set[str] = set()
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> RecordReader:
        self._opened = open_consumer(self._source, **self._options)
        self._consumer = await self._opened.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._opened.__aexit__(*exc)

    async def read(self, topic: str, partition: int, offset: int) -> ReadResult:
        """The record at ``topic[partition]@offset``, or why there is none (missing topic or partition, offset
        before the log start or at/after the log end, or removed).

        Raises :class:`BrokerUnavailable` when the broker does not answer within the reader's timeout.
        """
        consumer = self._consumer
        assert consumer is not None, "use `async with RecordReader(...)`"
        where = f"{topic}[{partition}]@{offset}"
        if topic not in self._topics:
            self._topics = await consumer.topics()  # fresh metadata: the topic may be new
            if topic not in self._topics:
                return ReadResult(None, f"topic {topic} does not exist")
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])  # the consumer's metadata now follows this topic only
        consumer.seek(tp, offset)
        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                fetched = await consumer.getmany(tp, timeout_ms=200, max_records=1)
            except OffsetOutOfRangeError:
                return ReadResult(None, f"{where} is outside the offsets the partition retains")
            records = fetched.get(tp, [])
            partitions = consumer.partitions_for_topic(topic)
            if not records and partitions is not None and partition not in partitions:
                return ReadResult(None, f"topic {topic} has no partition {partition}")
            if records:
                if records[0].offset == offset:
                    return ReadResult(records[0])
                return ReadResult(None, f"{where} was removed (the partition continues at {records[0].offset})")
            highwater = consumer.highwater(tp)
            if highwater is not None and offset >= highwater:
                return ReadResult(None, f"{where} is at or past the log end ({highwater})")
            if time.monotonic() > deadline:
                raise BrokerUnavailable(_connection(self._source)["bootstrap_servers"],
                                        f"no answer reading {where} within {self._timeout_s:g} s")
