"""Batch decoding of raw Kafka records into schema types, with rejects.

Contract: every input record ends up in exactly one of ``DecodedBatch.valid``
or ``DecodedBatch.rejected``; nothing raises for bad bytes. A reject carries
the DLQ reason class and a human-readable error naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Protocol, Sequence, TypeVar

import msgspec

from pipeline.contracts.schemas import DlqReason

T = TypeVar("T", bound=msgspec.Struct)


class RawRecord(Protocol):
    """What the codec needs of a consumed record (aiokafka's ConsumerRecord fits)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


@dataclass(slots=True)
class Rejected:
    """A record that failed to decode; goes to the DLQ."""

    record: RawRecord
    reason: DlqReason
    error: str


@dataclass(slots=True)
class DecodedBatch(Generic[T]):
    valid: list[tuple[RawRecord, T]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


class BatchDecoder(Generic[T]):
    """Decodes batches of JSON records into ``message_type``, as strict as its schema."""

    def __init__(self, message_type: type[T], max_record_bytes: int) -> None:
        self.message_type = message_type
        self._decoder = msgspec.json.Decoder(message_type)
        self._max_bytes = max_record_bytes

    def decode(self, records: Sequence[RawRecord]) -> DecodedBatch[T]:
        out: DecodedBatch[T] = DecodedBatch()
        decode = self._decoder.decode
        valid_append = out.valid.append
        for record in records:
            value = record.value
            if value is None:
                out.rejected.append(Rejected(record, "schema_violation", "record has no value (tombstone)"))
                continue
            if len(value) > self._max_bytes:
                out.rejected.append(Rejected(record, "oversize", f"{len(value)} bytes > max {self._max_bytes}"))
                continue
            try:
                valid_append((record, decode(value)))
            except msgspec.ValidationError as exc:
                message = str(exc)
                reason: DlqReason = "unknown_version" if message.endswith("`$.v`") else "schema_violation"
                out.rejected.append(Rejected(record, reason, message))
            except msgspec.DecodeError as exc:
                out.rejected.append(Rejected(record, "malformed_json", str(exc)))
        return out
