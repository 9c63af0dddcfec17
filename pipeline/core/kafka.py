"""How tickwire's Kafka clients are made: one place for their options.

Every producer and consumer in tickwire (the stages, the log-end probe, the
producers of bridges and tools, replay, the DLQ tools) is made here or with
:func:`client_options`, so connection settings apply to all of them alike.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer

from pipeline.config import Settings


def client_options(settings: Settings) -> dict[str, Any]:
    """Options every Kafka client of tickwire gets: where the brokers are."""
    return {"bootstrap_servers": settings.bootstrap_servers}


def make_producer(settings: Settings, *, max_request_size: int = 8 << 20) -> AIOKafkaProducer:
    """The producer tickwire uses everywhere: acks from all replicas, small linger, batched."""
    return AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        linger_ms=5,
        max_batch_size=1 << 20,
        max_request_size=max_request_size,
        request_timeout_ms=30_000,
    )
