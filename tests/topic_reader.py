"""Reading back what a topic holds, for assertions (no consumer group, deadline-bounded)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer

from pipeline.config import Settings


async def read_topic(settings: Settings, topic: str, key_prefix: bytes | tuple[bytes, ...], expected: int,
                     timeout_s: float = 30) -> list[tuple[bytes, bytes]]:
    """(key, value) of the records of ``topic`` whose key starts with ``key_prefix`` (or one of them).

    Returns as soon as ``expected`` were read, or with what was found at the deadline
    (a test then asserts on the count, so too few fails and too many is seen too).
    """
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.bootstrap_servers, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    found: list[tuple[bytes, bytes]] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(found) < expected:
                for records in (await consumer.getmany(timeout_ms=300)).values():
                    found += [(r.key, r.value) for r in records if (r.key or b"").startswith(key_prefix)]
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return found
