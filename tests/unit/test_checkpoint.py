"""The checkpoint: flush sinks → producer → after-publish → commit, only what was marked before it began."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Sequence

import orjson
from aiokafka import TopicPartition

from pipeline.contracts.topics import DLQ_TOPIC
from pipeline.core.retry import RetryPolicy
from pipeline.runtime.checkpoint import Checkpoint, DeadLetterLimits
from pipeline.sinks.base import ItemSink
from pipeline.sinks.topic import TopicPublisher

TP = TopicPartition("mt5.ticks.v1", 0)


@dataclass
class Rec:
    offset: int
    topic: str = "mt5.ticks.v1"
    partition: int = 0
    timestamp: int = 0
    key: bytes | None = b"k"
    value: bytes | None = b"v"


class RecordingSink(ItemSink[int]):
    """Buffers ints; its 'store' refuses the values in ``refuse`` (a constraint) and logs every flush."""

    def __init__(self, name: str, log: list[str], refuse: frozenset[int] = frozenset()) -> None:
        self._name, self._log, self._refuse = name, log, refuse
        self.buffer: list[tuple[int, Rec]] = []
        self.stored: list[int] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def pending(self) -> int:
        return len(self.buffer)

    def add(self, value: int, record: Rec) -> None:
        self.buffer.append((value, record))

    def _items(self) -> Sequence[tuple[int, Rec]]:
        return list(self.buffer)

    async def _write(self, items: Sequence[tuple[int, Rec]]) -> None:
        self._log.append(f"write {self._name}")
        if any(value in self._refuse for value, _ in items):
            raise ValueError("constraint violated")
        self.stored += [value for value, _ in items]

    def _origin(self, item: tuple[int, Rec]) -> Rec:
        return item[1]

    def _clear(self) -> None:
        self.buffer = []


class FakeProducer:
    """Acknowledges every record at once; keeps what was sent."""

    def __init__(self, log: list[str]) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self._log = log

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[Any]:
        self.sent.append((topic, key, value))
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def checkpoint(log: list[str], sinks: list[RecordingSink], producer: FakeProducer, after: list[RecordingSink],
               committed: list[dict[TopicPartition, int]]) -> tuple[Checkpoint, TopicPublisher]:
    async def commit(offsets: dict[TopicPartition, int]) -> None:
        log.append("commit")
        committed.append(dict(offsets))

    publisher = TopicPublisher(lambda: producer)
    original_flush = publisher.flush

    async def logged_flush() -> None:
        log.append("flush producer")
        await original_flush()

    publisher.flush = logged_flush  # type: ignore[method-assign]  # the order of the producer's flush is what is tested
    return Checkpoint("test", commit, sinks, publisher, after, interval_s=60, max_records=10, stop=asyncio.Event(),
                      policy=RetryPolicy(max_backoff_s=0.01, first_backoff_s=0.001), limits=DeadLetterLimits()), publisher


async def test_sinks_then_producer_then_after_publish_then_commit() -> None:
    log: list[str] = []
    producer = FakeProducer(log)
    ticks, candles, markers = RecordingSink("ticks", log), RecordingSink("candles", log), RecordingSink("markers", log)
    committed: list[dict[TopicPartition, int]] = []
    cp, publisher = checkpoint(log, [ticks, candles], producer, [markers], committed)
    await publisher.add("candles.v1", b"k", b"bar")  # a derived record: acknowledged before the markers are written
    ticks.add(1, Rec(0))
    candles.add(2, Rec(0))
    markers.add(3, Rec(0))
    cp.mark(TP, 1, 1, 1234)
    await cp.commit()
    assert log == ["write ticks", "write candles", "flush producer", "write markers", "commit"]
    assert committed == [{TP: 1}] and cp.committed[TP].offset == 1 and cp.committed[TP].record_time_ms == 1234
    assert cp.commits == 1 and cp.last_commit_at is not None


async def test_a_checkpoint_that_wrote_nothing_leaves_the_version_of_the_written_data() -> None:
    log: list[str] = []
    committed: list[dict[TopicPartition, int]] = []
    ticks = RecordingSink("ticks", log)
    cp, _ = checkpoint(log, [ticks], FakeProducer(log), [], committed)
    cp.mark(TP, 1, 1)  # records that fed no sink (say, ticks an outcome stage only watched)
    await cp.commit()
    assert committed == [{TP: 1}] and cp.commits == 0, "kept answers stay valid: nothing they read changed"
    ticks.add(1, Rec(1))
    cp.mark(TP, 2, 1)
    await cp.commit()
    assert cp.commits == 1


async def test_only_offsets_marked_before_the_checkpoint_began_are_committed() -> None:
    log: list[str] = []
    committed: list[dict[TopicPartition, int]] = []
    slow = RecordingSink("slow", log)
    cp, _ = checkpoint(log, [slow], FakeProducer(log), [], committed)
    gate = asyncio.Event()
    original = slow._write

    async def waiting_write(items):  # type: ignore[no-untyped-def]
        await gate.wait()
        await original(items)

    slow._write = waiting_write  # type: ignore[method-assign]
    slow.add(1, Rec(0))
    cp.mark(TP, 5, 5)
    running = asyncio.create_task(cp.commit())
    await asyncio.sleep(0)
    cp.mark(TP, 9, 4)  # handed off while the checkpoint flushes: belongs to the next one
    gate.set()
    await running
    assert committed == [{TP: 5}]
    await cp.commit()  # the mark made during the flush is the next checkpoint's, never lost
    assert committed == [{TP: 5}, {TP: 9}]


async def test_a_refused_record_is_dead_lettered_and_the_rest_is_stored() -> None:
    log: list[str] = []
    producer = FakeProducer(log)
    committed: list[dict[TopicPartition, int]] = []
    table = RecordingSink("table", log, refuse=frozenset({13}))
    cp, _ = checkpoint(log, [table], producer, [], committed)
    for i in range(20):
        table.add(i, Rec(100 + i))
    cp.mark(TP, 120, 20)
    await cp.commit()
    assert sorted(table.stored) == [i for i in range(20) if i != 13]
    (letter,) = [orjson.loads(value) for topic, _, value in producer.sent if topic == DLQ_TOPIC]
    assert (letter["reason"], letter["stage"], letter["offset"]) == ("store_rejected", "test", 113)
    assert letter["error"].startswith("table: ValueError")
    assert committed == [{TP: 120}]


async def test_nothing_is_committed_while_a_sink_fails_and_everything_after_it_recovers() -> None:
    log: list[str] = []
    committed: list[dict[TopicPartition, int]] = []
    flaky = RecordingSink("flaky", log)
    failures = [ConnectionError("down")] * 3
    original = flaky._write

    async def failing_write(items):  # type: ignore[no-untyped-def]
        if failures:
            raise failures.pop()
        await original(items)

    flaky._write = failing_write  # type: ignore[method-assign]
    cp, _ = checkpoint(log, [flaky], FakeProducer(log), [], committed)
    flaky.add(7, Rec(0))
    cp.mark(TP, 1, 1)
    states: list[str] = []
    cp._on_circuit = lambda circuit: states.append(circuit.state)
    await cp.commit()
    assert flaky.stored == [7] and committed == [{TP: 1}] and states == ["open", "closed"]
