"""Batch decoding of raw Kafka records into schema types, with rejects.

Contract: every input record ends up in exactly one of ``DecodedBatch.valid``
or ``DecodedBatch.rejected``, whatever its bytes: no exception of the decoder
(invalid UTF-8 in a string or a name, a lone surrogate, an overlong encoding,
anything msgspec or a domain check raises) ever leaves :meth:`BatchDecoder.decode`.
A reject carries the DLQ reason and a human-readable error naming the field.
After the schema, the domain check of the message type runs
(:mod:`pipeline.core.domain`: prices, crossed quotes, future times, record key
against the body, duplicate JSON keys).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Generic, Protocol, Sequence, TypeVar

import msgspec

from pipeline.contracts.schemas import DlqReason
from pipeline.core.domain import Check, DomainRules, check_for

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
    """A record that failed to decode or a domain check; goes to the DLQ."""

    record: RawRecord
    reason: DlqReason
    error: str


@dataclass(slots=True)
class DecodedBatch(Generic[T]):
    valid: list[tuple[RawRecord, T]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


class BatchDecoder(Generic[T]):
    """Decodes batches of JSON records into ``message_type``, as strict as its schema, then checks their domain."""

    def __init__(self, message_type: type[T], max_record_bytes: int, rules: DomainRules | None = None) -> None:
        self.message_type = message_type
        self._decoder = msgspec.json.Decoder(message_type)
        self._max_bytes = max_record_bytes
        self._check: Check = check_for(message_type, rules or DomainRules())

    def decode(self, records: Sequence[RawRecord], now_ms: int | None = None) -> DecodedBatch[T]:
        """Decode ``records`` (times in the future are judged against ``now_ms``, default the wall clock)."""
        out: DecodedBatch[T] = DecodedBatch()
        now = int(time.time() * 1000) if now_ms is None else now_ms
        decode, check = self._decoder.decode, self._check
        valid_append, reject = out.valid.append, out.rejected.append
        for record in records:
            value = record.value
            if value is None:
                reject(Rejected(record, "schema_violation", "record has no value (tombstone)"))
                continue
            if len(value) > self._max_bytes:
                reject(Rejected(record, "oversize", f"{len(value)} bytes > max {self._max_bytes}"))
                continue
            try:
                message = decode(value)
                problem = check(record.key, value, message, now)
            except msgspec.ValidationError as exc:
                text = str(exc)
                reason: DlqReason = "unknown_version" if text.endswith("`$.v`") else "schema_violation"
                reject(Rejected(record, reason, text))
                continue
            except msgspec.DecodeError as exc:
                reject(Rejected(record, "malformed_json", str(exc)))
                continue
            except (UnicodeDecodeError, UnicodeEncodeError) as exc:
                reject(Rejected(record, "malformed_json", f"invalid UTF-8 in a string or a name: {exc.reason}"))
                continue
            except Exception as exc:  # noqa: BLE001 - no record may stop the stage, whatever it holds
                reject(Rejected(record, "malformed_json", f"{type(exc).__name__}: {str(exc)[:500]}"))
                continue
            if problem is None:
                valid_append((record, message))
            else:
                reject(Rejected(record, problem[0], problem[1]))
        return out
