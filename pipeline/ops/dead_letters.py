"""Reading the dead-letter topic (operator views, the demo)."""

from __future__ import annotations

import msgspec

from pipeline.contracts.schemas import DeadLetter
from pipeline.contracts.topics import DLQ_TOPIC
from pipeline.ops.topic_scan import scan_topic


async def read_dead_letters(bootstrap_servers: list[str]) -> list[tuple[int, int, DeadLetter]]:
    """All records in the DLQ as (partition, offset, letter), read without a consumer group."""
    decoder = msgspec.json.Decoder(DeadLetter)
    return [
        (record.partition, record.offset, decoder.decode(record.value))
        async for batch in scan_topic(bootstrap_servers, DLQ_TOPIC)
        for record in batch
    ]
