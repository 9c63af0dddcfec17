"""Producing the benchmark's records to a topic as fast as the broker takes them.

Records are grouped per partition (the partition Kafka's default partitioner
gives their key, as every tickwire producer does) into large batches sent with
``send_batch``, so preloading 1M ticks takes seconds and does not sit inside
any contender's measurement: contenders start only once everything is
acknowledged.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Callable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from bench.data import Record
from pipeline.config import Settings
from pipeline.core.kafka import make_producer

#: Records per produced batch (one partition each).
BATCH_RECORDS = 4_000


async def produce(settings: Settings, topic: str, records: Sequence[Record],
                  on_progress: Callable[[int], None] | None = None) -> None:
    """Send ``records`` to ``topic`` keeping each key's order; returns when the broker acknowledged all."""
    producer = make_producer(settings)
    await producer.start()
    try:
        await _send_all(producer, topic, records, on_progress)
    finally:
        await producer.stop()


async def _send_all(producer: AIOKafkaProducer, topic: str, records: Sequence[Record],
                    on_progress: Callable[[int], None] | None) -> None:
    partitions = sorted(await producer.partitions_for(topic))
    partitioner = DefaultPartitioner()
    by_partition: dict[int, list[Record]] = defaultdict(list)
    for key, value in records:
        by_partition[partitioner(key, partitions, partitions)].append((key, value))
    pending: list[asyncio.Future] = []
    sent = 0
    while by_partition:
        for partition in list(by_partition):
            chunk = by_partition[partition][:BATCH_RECORDS]
            del by_partition[partition][:BATCH_RECORDS]
            if not by_partition[partition]:
                del by_partition[partition]
            batch = producer.create_batch()
            for key, value in chunk:
                if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
                    pending.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            pending.append(await producer.send_batch(batch, topic, partition=partition))
            sent += len(chunk)
        if len(pending) > 64:
            await asyncio.gather(*pending)
            pending.clear()
            if on_progress is not None:
                on_progress(sent)
    await asyncio.gather(*pending)
    if on_progress is not None:
        on_progress(sent)
