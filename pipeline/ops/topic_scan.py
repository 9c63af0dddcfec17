"""Reading a whole topic from the start, without a consumer group (operator views, the demo).

Stops when every partition's position reached the high watermark reported with
its fetches (tansu's ListOffsets end is unreliable, see ARCHITECTURE.md), or
after ``idle_polls`` empty polls in a row. Never commits anything.
"""

from __future__ import annotations

from typing import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord


async def scan_topic(bootstrap_servers: list[str], topic: str, *, idle_polls: int = 3) -> AsyncIterator[list[ConsumerRecord]]:
    """Yield the records of ``topic`` in fetched batches, from the beginning to the current end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        idle = 0
        while idle < idle_polls:
            fetched = await consumer.getmany(timeout_ms=200, max_records=10_000)
            records = [r for batch in fetched.values() for r in batch]
            idle = 0 if records else idle + 1
            if records:
                yield records
            if await _caught_up(consumer, tps):
                return
    finally:
        await consumer.stop()


async def count_records(bootstrap_servers: list[str], topic: str) -> int:
    return sum([len(batch) async for batch in scan_topic(bootstrap_servers, topic)])


async def _caught_up(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> bool:
    for tp in tps:
        highwater = consumer.highwater(tp)
        if highwater is None or await consumer.position(tp) < highwater:
            return False
    return True
