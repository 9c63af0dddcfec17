"""The broker role's conformance suite: what tickwire needs from a Kafka-protocol broker, on every reachable one.

Backends: the local stack's tansu always; Redpanda when
``TICKWIRE_TEST_REDPANDA_URL`` is ``kafka://host:port`` (skipped with that
reason otherwise). Each test uses topics and consumer groups of its own.

What tickwire relies on: ``tickwire topics apply`` creates the catalog's topics
with their partitions and configs and, applied again, reports them unchanged;
records of one key land on one partition in the order produced, with the
producer tickwire uses (acks from all replicas); a consumer group resumes
from its committed offset. Lag is read from fetch high-watermarks, never from
``end_offsets()`` (tansu answers ListOffsets wrongly), so nothing here asks
for end offsets.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.config import load_settings
from pipeline.contracts.catalog import Catalog, TopicSpec, apply_catalog
from pipeline.core.kafka import make_producer

REDPANDA_URL = os.environ.get("TICKWIRE_TEST_REDPANDA_URL")
DEADLINE_S = 30


@pytest.fixture(params=["tansu", "redpanda"])
def bootstrap(request: pytest.FixtureRequest) -> list[str]:
    if request.param == "tansu":
        return request.getfixturevalue("stack_settings").bootstrap_servers
    if REDPANDA_URL is None:
        pytest.skip("TICKWIRE_TEST_REDPANDA_URL is not set: the Redpanda run needs a live broker")
    return load_settings(broker_url=REDPANDA_URL).bootstrap_servers


def catalog(prefix: str, partitions: int = 4) -> Catalog:
    return Catalog(topics=[
        TopicSpec(name=f"{prefix}.ticks", partitions=partitions, retention_ms=3_600_000, cleanup_policy="delete",
                  key="tenant:broker:symbol", schema="tick.v1"),
        TopicSpec(name=f"{prefix}.dlq", partitions=1, retention_ms=86_400_000, cleanup_policy="delete",
                  key="original key", schema="dlq.v1"),
    ])


def unique() -> str:
    return "conf-" + uuid.uuid4().hex[:10]


def consumer(bootstrap: list[str], topic: str, group: str | None) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                            enable_auto_commit=False, session_timeout_ms=6_000, heartbeat_interval_ms=1_000)


async def read(c: AIOKafkaConsumer, expected: int) -> list:
    """Records until ``expected`` arrived (fails at the deadline with what came)."""
    found: list = []
    try:
        async with asyncio.timeout(DEADLINE_S):
            while len(found) < expected:
                for records in (await c.getmany(timeout_ms=300)).values():
                    found.extend(records)
    except TimeoutError:
        pytest.fail(f"only {len(found)} of {expected} records within {DEADLINE_S} s")
    return found


@pytest.mark.stack
async def test_apply_creates_the_catalog_then_reports_it_unchanged(bootstrap: list[str]) -> None:
    wanted = catalog(unique())
    first = await apply_catalog(wanted, bootstrap)
    assert [(s.name, s.action, s.detail) for s in first] == [
        (wanted.topics[0].name, "created", "4 partitions"), (wanted.topics[1].name, "created", "1 partitions")]
    again = await apply_catalog(wanted, bootstrap)
    assert [(s.name, s.action) for s in again] == [(t.name, "ok") for t in wanted.topics], again


@pytest.mark.stack
async def test_one_key_one_partition_in_order(bootstrap: list[str]) -> None:
    topic = catalog(unique()).topics[0]
    await apply_catalog(Catalog(topics=[topic]), bootstrap)
    settings = load_settings(broker_url=",".join(f"kafka://{s}" for s in bootstrap))
    producer = make_producer(settings)
    await producer.start()
    try:
        keys = [f"acme:demo:S{i}".encode() for i in range(8)]
        for n in range(50):
            for key in keys:
                await producer.send(topic.name, key=key, value=str(n).encode())
        await producer.flush()
    finally:
        await producer.stop()

    c = consumer(bootstrap, topic.name, None)
    await c.start()
    try:
        records = await read(c, 50 * len(keys))
    finally:
        await c.stop()
    partitions: dict[bytes, set[int]] = defaultdict(set)
    values: dict[bytes, list[int]] = defaultdict(list)
    for r in records:
        partitions[r.key].add(r.partition)
        values[r.key].append(int(r.value))
    assert all(len(p) == 1 for p in partitions.values())
    assert all(v == list(range(50)) for v in values.values())


@pytest.mark.stack
async def test_a_group_resumes_from_its_committed_offset(bootstrap: list[str]) -> None:
    topic = TopicSpec(name=unique(), partitions=1, retention_ms=3_600_000, cleanup_policy="delete",
                      key="k", schema="tick.v1")
    await apply_catalog(Catalog(topics=[topic]), bootstrap)
    settings = load_settings(broker_url=",".join(f"kafka://{s}" for s in bootstrap))
    producer = make_producer(settings)
    await producer.start()
    try:
        for n in range(20):
            await producer.send(topic.name, key=b"k", value=str(n).encode())
        await producer.flush()
    finally:
        await producer.stop()

    group = unique()
    first = consumer(bootstrap, topic.name, group)
    await first.start()
    try:
        records = await read(first, 20)
        await first.commit({TopicPartition(topic.name, 0): records[11].offset + 1})  # 0..11 done
    finally:
        await first.stop()
    second = consumer(bootstrap, topic.name, group)
    await second.start()
    try:
        resumed = await read(second, 8)
    finally:
        await second.stop()
    assert [int(r.value) for r in resumed] == list(range(12, 20))
