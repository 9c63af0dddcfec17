"""Dead letters: building ``dlq.v1`` records from records that cannot be processed."""

from __future__ import annotations

import base64
import time

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.codec import Rejected
from pipeline.schemas import DeadLetter

DLQ_TOPIC = "dlq.v1"
_encoder = msgspec.json.Encoder()


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def dead_letter(rejected: Rejected) -> tuple[bytes | None, bytes]:
    """The DLQ record (key, value) for a rejected record: its original key and an envelope."""
    record = rejected.record
    letter = DeadLetter(
        v=1,
        reason=rejected.reason,
        error=rejected.error[:2048],
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp,
        key_b64=_b64(record.key),
        value_b64=_b64(record.value),
        failed_at_ms=int(time.time() * 1000),
    )
    return record.key, _encoder.encode(letter)


def original_value(letter: DeadLetter) -> bytes | None:
    """The bytes the record had on its source topic."""
    return None if letter.value_b64 is None else base64.b64decode(letter.value_b64)


async def read_dead_letters(bootstrap_servers: list[str], *, idle_polls: int = 3) -> list[tuple[int, int, DeadLetter]]:
    """All records in the DLQ as (partition, offset, letter), read without a consumer group.

    Stops when every partition's position reached the high watermark reported
    with its fetches (tansu's ListOffsets end is unreliable), or after
    ``idle_polls`` empty polls in a row.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False)
    await consumer.start()
    letters: list[tuple[int, int, DeadLetter]] = []
    try:
        partitions = consumer.partitions_for_topic(DLQ_TOPIC) or set()
        tps = [TopicPartition(DLQ_TOPIC, p) for p in sorted(partitions)]
        if not tps:
            return letters
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        decoder = msgspec.json.Decoder(DeadLetter)
        idle = 0
        while idle < idle_polls:
            fetched = await consumer.getmany(timeout_ms=200, max_records=10_000)
            records = [r for batch in fetched.values() for r in batch]
            idle = 0 if records else idle + 1
            for record in records:
                letters.append((record.partition, record.offset, decoder.decode(record.value)))
            if await _caught_up(consumer, tps):
                break
    finally:
        await consumer.stop()
    return letters


async def _caught_up(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> bool:
    for tp in tps:
        highwater = consumer.highwater(tp)
        if highwater is None or await consumer.position(tp) < highwater:
            return False
    return True
