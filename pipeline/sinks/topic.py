"""A sink that publishes to Kafka topics (DLQ, derived topics) through one producer.

``add`` hands the record to the producer at once; ``flush`` waits until the
broker acknowledged every record added since the last flush and re-sends the
ones that failed. Records are only forgotten once acknowledged, so a flush that
raises can be retried. Duplicates on the topic are possible after a crash
(at-least-once); consumers deduplicate by the record's identity.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Callable

from aiokafka import AIOKafkaProducer

from pipeline.core.metrics import RECORDS_PRODUCED
from pipeline.sinks.base import Sink


@dataclass(slots=True)
class _Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    future: asyncio.Future | None = None


class TopicPublisher(Sink):
    def __init__(self, producer: Callable[[], AIOKafkaProducer]) -> None:
        self._producer = producer  # resolved at send time: the producer starts with the worker
        self._outgoing: list[_Outgoing] = []

    @property
    def name(self) -> str:
        return "producer"

    @property
    def pending(self) -> int:
        return len(self._outgoing)

    async def add(self, topic: str, key: bytes | None, value: bytes) -> None:
        item = _Outgoing(topic, key, value)
        self._outgoing.append(item)
        RECORDS_PRODUCED.labels(topic).inc()
        await self._send(item)

    async def _send(self, item: _Outgoing) -> None:
        try:
            item.future = await self._producer().send(item.topic, item.value, key=item.key)
        except Exception as exc:  # noqa: BLE001 - kept, re-sent at flush
            failed: asyncio.Future = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            item.future = failed

    async def flush(self) -> None:
        if not self._outgoing:
            return
        results = await asyncio.gather(*(item.future for item in self._outgoing), return_exceptions=True)
        failed = [item for item, result in zip(self._outgoing, results) if isinstance(result, BaseException)]
        self._outgoing = failed
        if failed:
            for item in failed:
                await self._send(item)
            raise ConnectionError(f"{len(failed)} records not acknowledged by the broker; re-sent")
