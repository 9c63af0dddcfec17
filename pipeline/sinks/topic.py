"""A sink that publishes to Kafka topics (DLQ, derived topics) through one producer.

``add`` hands the record to the producer at once; ``flush`` waits until the
broker acknowledged every record added since the last flush and re-sends the
ones that failed. Records are only forgotten once acknowledged, so a flush that
raises can be retried. Duplicates on the topic are possible after a crash
(at-least-once); consumers deduplicate by the record's identity.

Each record remembers the input record it was derived from. The broker
acknowledges records one by one, so isolation needs no splitting: in
:meth:`TopicPublisher.flush_isolating` a record refused for good (too large,
an invalid topic) becomes a refusal of its input record, and the others are
re-sent. A dead letter itself has no input record to fall back to: if the
broker refuses one, it is logged with its coordinates and dropped (its size is
capped, so this means a broker limit below ``TICKWIRE_DLQ_MAX_ENVELOPE_BYTES``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Callable

from aiokafka import AIOKafkaProducer

from pipeline.core.codec import RawRecord
from pipeline.core.errors import classify, describe
from pipeline.core.isolation import Refusal
from pipeline.core.metrics import RECORDS_PRODUCED
from pipeline.sinks.base import Sink

log = logging.getLogger("tickwire.producer")


@dataclass(slots=True)
class _Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    origin: RawRecord | None
    future: asyncio.Future[object] | None = None

    def sent(self) -> asyncio.Future[object]:
        """The acknowledgement of the last send (set before :meth:`TopicPublisher.add` returns)."""
        assert self.future is not None
        return self.future


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

    async def add(self, topic: str, key: bytes | None, value: bytes, origin: RawRecord | None = None) -> None:
        """Send a record; ``origin`` is the input record it derives from (None for a dead letter)."""
        item = _Outgoing(topic, key, value, origin)
        self._outgoing.append(item)
        RECORDS_PRODUCED.labels(topic).inc()
        await self._send(item)

    async def _send(self, item: _Outgoing) -> None:
        try:
            item.future = await self._producer().send(item.topic, item.value, key=item.key)
        except Exception as exc:  # noqa: BLE001 - kept, re-sent (or refused) at flush
            failed: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            item.future = failed

    async def _settle(self) -> list[tuple[_Outgoing, BaseException]]:
        """Wait for every acknowledgement; keep and return the failed records."""
        results = await asyncio.gather(*(item.sent() for item in self._outgoing), return_exceptions=True)
        failed = [(item, result) for item, result in zip(self._outgoing, results) if isinstance(result, BaseException)]
        self._outgoing = [item for item, _ in failed]
        return failed

    async def _resend_and_raise(self, failed: list[tuple[_Outgoing, BaseException]]) -> None:
        """Re-send ``failed`` (still kept in the buffer) and raise a transient error."""
        for item, _ in failed:
            await self._send(item)
        first = failed[0][1]
        raise ConnectionError(f"{len(failed)} records not acknowledged by the broker ({describe(first, 200)}); re-sent")

    async def flush(self) -> None:
        if not self._outgoing:
            return
        failed = await self._settle()
        if failed:
            if all(classify(exc) == "permanent" for _, exc in failed):
                raise failed[0][1]  # the checkpoint isolates: nothing to gain from re-sending
            await self._resend_and_raise(failed)

    async def flush_isolating(self) -> list[Refusal]:
        if not self._outgoing:
            return []
        failed = await self._settle()
        retry = [(item, exc) for item, exc in failed if classify(exc) == "transient"]
        if retry:  # the refused ones stay (their futures keep the error) and are refused at the next attempt
            await self._resend_and_raise(retry)
        self._outgoing = []
        refused: list[Refusal] = []
        for item, exc in failed:
            if item.origin is None:
                log.error("the broker refused a %d-byte record for %s and it has no input record to dead-letter: %s",
                          len(item.value), item.topic, describe(exc, 300))
            else:
                refused.append(Refusal(item.origin, self.name, f"{item.topic}: {describe(exc)}"))
        return refused
