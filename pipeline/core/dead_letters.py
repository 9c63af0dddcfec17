"""Dead letters: ``dlq.v1`` records for records a stage cannot process.

Contract: :func:`dead_letter` always returns a record that fits in
``max_envelope_bytes`` (when that is at least 16 KiB), whatever the size of the
original key and value, so a dead letter can always be written. A value too
large to carry whole is kept by reference: its first ``head_bytes``, its length
and SHA-256, and its source topic/partition/offset (``tickwire dlq show`` reads
the whole record there while the topic retains it). A key over
:data:`MAX_KEY_BYTES` is cut the same way, and the DLQ record is then keyed by
``sha256:<hex>`` of it.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass

import msgspec

from pipeline.contracts.schemas import DeadLetter, DlqReason
from pipeline.contracts.topics import DLQ_TOPIC
from pipeline.core.codec import RawRecord

__all__ = ["DLQ_TOPIC", "DeadLetterRequest", "dead_letter", "original_key", "original_value"]

#: Longest original key carried whole (a Kafka key is usually a few dozen bytes).
MAX_KEY_BYTES = 1024
#: Room kept for the envelope's other fields (error text up to 2048 characters, names, numbers).
_ENVELOPE_OVERHEAD = 4096
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class DeadLetterRequest:
    """One record to dead-letter: where it came from, why, and which stage refused it."""

    record: RawRecord
    reason: DlqReason
    error: str
    stage: str | None = None


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _b64_len(n: int) -> int:
    return 4 * ((n + 2) // 3)


def dead_letter(request: DeadLetterRequest, *, max_envelope_bytes: int, head_bytes: int) -> tuple[bytes | None, bytes]:
    """The DLQ record (key, value) of ``request`` (see the module docstring)."""
    record = request.record
    key, value = record.key, record.value
    key_truncated = key is not None and len(key) > MAX_KEY_BYTES
    dlq_key = key if key is None or not key_truncated else b"sha256:" + hashlib.sha256(key).hexdigest().encode()
    kept_key = key[:MAX_KEY_BYTES] if key is not None else None
    room = max_envelope_bytes - _ENVELOPE_OVERHEAD - _b64_len(len(kept_key or b""))
    value_truncated = value is not None and _b64_len(len(value)) > room
    kept_value = value
    if value is not None and value_truncated:
        kept_value = value[:max(0, min(head_bytes, room * 3 // 4 - 3))]
    letter = DeadLetter(
        v=1,
        reason=request.reason,
        error=request.error[:2048],
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp,
        key_b64=_b64(kept_key),
        value_b64=_b64(kept_value),
        failed_at_ms=int(time.time() * 1000),
        stage=request.stage,
        value_size=None if value is None else len(value),
        value_sha256=None if value is None else hashlib.sha256(value).hexdigest(),
        value_truncated=value_truncated,
        key_truncated=key_truncated,
    )
    return dlq_key, _encoder.encode(letter)


def original_value(letter: DeadLetter) -> bytes | None:
    """The bytes carried in the letter: the whole original value, or its head when ``value_truncated``."""
    return None if letter.value_b64 is None else base64.b64decode(letter.value_b64)


def original_key(letter: DeadLetter) -> bytes | None:
    """The key carried in the letter (its head when ``key_truncated``)."""
    return None if letter.key_b64 is None else base64.b64decode(letter.key_b64)
