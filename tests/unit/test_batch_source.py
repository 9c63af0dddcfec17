"""A stage's batch source: eager routes get batches at once, others only between checkpoints; a checkpoint commits
exactly what was handed off before it began; a record a handler fails on is dead-lettered and the stage goes on."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Sequence

import orjson
from aiokafka import TopicPartition

from pipeline.config import load_settings
from pipeline.contracts.schemas import Tick
from pipeline.contracts.topics import DLQ_TOPIC, TICKS_TOPIC
from pipeline.core.batch import RecordBatch, run_isolating
from pipeline.ingest.producer import encode_tick
from pipeline.runtime.source import BatchSource
from pipeline.sinks.base import ItemSink
from pipeline.sinks.topic import TopicPublisher

TP = TopicPartition(TICKS_TOPIC, 0)


@dataclass
class Rec:
    offset: int
    value: bytes
    key: bytes = b"acme:demo:EURUSD"
    topic: str = TICKS_TOPIC
    partition: int = 0
    timestamp: int = 1_000


def records(first: int, n: int) -> list[Rec]:
    return [Rec(first + i, encode_tick(tenant="acme", broker="demo", symbol="EURUSD", time_msc=1_763_899_200_000 + first + i,
                                       bid=1.1, ask=1.2)) for i in range(n)]


class FakeConsumer:
    """Hands out scripted fetches, then nothing; records commits."""

    def __init__(self, fetches: list[dict[TopicPartition, list[Rec]]]) -> None:
        self.fetches = list(fetches)
        self.commits: list[dict[TopicPartition, int]] = []

    async def start(self) -> None:
        pass

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[TopicPartition, list[Rec]]:
        if self.fetches:
            return self.fetches.pop(0)
        await asyncio.sleep(timeout_ms / 1000)
        return {}

    def assignment(self) -> set[TopicPartition]:
        return {TP}


class FakeChannel:
    """An agent on an in-memory channel: runs the handler on each batch, as the worker's agents do."""

    def __init__(self) -> None:
        self.handler: Any = None
        self.sinks: Any = None

    async def send(self, value: RecordBatch[Any]) -> None:
        async with value.processing():
            value.failed.extend(run_isolating(self.handler, value.messages, self.sinks))


class FakeApp:
    def channel(self, maxsize: int) -> FakeChannel:
        return FakeChannel()


class Buffer(ItemSink[int]):
    """Collects offsets; its flush waits for ``gate`` (a slow store), and can be eager."""

    def __init__(self, name: str, eager: bool = False) -> None:
        self._name, self.eager = name, eager
        self.gate = asyncio.Event()
        self.gate.set()
        self.added: list[int] = []
        self.flushed: list[int] = []
        self._buffer: list[int] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def add(self, offsets: list[int]) -> None:
        self.added += offsets
        self._buffer += offsets

    def _items(self) -> Sequence[int]:
        return list(self._buffer)

    async def _write(self, items: Sequence[int]) -> None:
        await self.gate.wait()
        self.flushed += items

    def _origin(self, item: int) -> None:
        return None

    def _clear(self) -> None:
        self._buffer = []


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[None]:
        self.sent.append((topic, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def source_with(fetches: list[dict[TopicPartition, list[Rec]]], hot: Buffer, table: Buffer,
                table_handler: Any) -> tuple[BatchSource, FakeConsumer, Producer]:
    settings = load_settings(commit_interval_ms=60_000, commit_max_records=2, fetch_timeout_ms=5, max_future_skew_ms=10**12)
    producer = Producer()
    source = BatchSource(FakeApp(), "ingest", settings, [hot, table], TopicPublisher(lambda: producer))  # type: ignore[arg-type]
    eager = source.route(TICKS_TOPIC, Tick, eager=True)
    eager.handler, eager.sinks = (lambda messages, sinks: hot.add([r.offset for r, _ in messages])), None
    later = source.route(TICKS_TOPIC, Tick)
    later.handler, later.sinks = table_handler, None
    consumer = FakeConsumer(fetches)
    source.consumer = consumer  # type: ignore[assignment]

    async def commit(offsets: dict[TopicPartition, int]) -> None:
        consumer.commits.append(dict(offsets))

    source._committer = commit  # type: ignore[assignment]
    return source, consumer, producer


async def wait_for(condition: Any, what: str) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.001)


async def test_batches_are_held_during_a_checkpoint_except_for_eager_routes() -> None:
    hot, table = Buffer("hot", eager=True), Buffer("table")
    source, consumer, _ = source_with([{TP: records(0, 2)}, {TP: records(2, 2)}], hot, table,
                                      lambda messages, sinks: table.add([r.offset for r, _ in messages]))
    table.gate.clear()  # the first checkpoint's table flush hangs
    task = asyncio.create_task(source._consume())
    try:
        await wait_for(lambda: hot.added == [0, 1, 2, 3], "the eager route to get both batches")
        assert table.added == [0, 1], "the second batch is held while the checkpoint runs"
        assert consumer.commits == []
        table.gate.set()
        await wait_for(lambda: consumer.commits[-1:] == [{TP: 4}], "the held batch handed off and committed")
        assert consumer.commits[0] == {TP: 2}, "the first checkpoint committed only what was handed off before it"
        assert table.flushed == [0, 1, 2, 3] and hot.flushed == [0, 1, 2, 3]
    finally:
        source._stop_event.set()
        await asyncio.wait_for(task, 5)


async def test_a_record_the_handler_fails_on_is_dead_lettered_and_the_rest_committed() -> None:
    hot, table = Buffer("hot", eager=True), Buffer("table")

    def picky(messages: Any, sinks: Any) -> None:
        if any(record.offset == 5 for record, _ in messages):
            raise ZeroDivisionError("offset 5 cannot be handled")
        table.add([r.offset for r, _ in messages])

    source, consumer, producer = source_with([{TP: records(3, 5)}], hot, table, picky)
    task = asyncio.create_task(source._consume())
    try:
        await wait_for(lambda: consumer.commits[-1:] == [{TP: 8}], "the batch committed")
        assert sorted(set(table.added)) == [3, 4, 6, 7]
        (letter,) = [orjson.loads(value) for topic, value in producer.sent if topic == DLQ_TOPIC]
        assert (letter["offset"], letter["reason"], letter["stage"]) == (5, "processing_error", "ingest")
        assert "ZeroDivisionError" in letter["error"]
    finally:
        source._stop_event.set()
        await asyncio.wait_for(task, 5)


async def test_decode_rejects_are_dead_lettered_with_their_stage() -> None:
    hot, table = Buffer("hot", eager=True), Buffer("table")
    bad = [Rec(0, b"{not json"), Rec(1, records(1, 1)[0].value, key=b"globex:demo:EURUSD")]
    source, consumer, producer = source_with([{TP: bad + records(2, 1)}], hot, table,
                                             lambda messages, sinks: table.add([r.offset for r, _ in messages]))
    task = asyncio.create_task(source._consume())
    try:
        await wait_for(lambda: consumer.commits[-1:] == [{TP: 3}], "the batch committed")
        letters = sorted((letter["offset"], letter["reason"]) for letter in
                         (orjson.loads(value) for topic, value in producer.sent if topic == DLQ_TOPIC))
        assert letters == [(0, "malformed_json"), (1, "key_mismatch")] and table.added == [2]
    finally:
        source._stop_event.set()
        await asyncio.wait_for(task, 5)
