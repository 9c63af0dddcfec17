"""Dead letters: building ``dlq.v1`` records from records that cannot be processed."""

from __future__ import annotations

import base64
import time

import msgspec

from pipeline.contracts.schemas import DeadLetter
from pipeline.core.codec import Rejected

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
