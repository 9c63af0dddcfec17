"""A dead letter can always be written: its size is bounded whatever the record's."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

import msgspec
import pytest

from pipeline.contracts.schemas import DeadLetter
from pipeline.core.dead_letters import MAX_KEY_BYTES, DeadLetterRequest, dead_letter


@dataclass
class Rec:
    key: bytes | None
    value: bytes | None
    topic: str = "mt5.ticks.v1"
    partition: int = 4
    offset: int = 77
    timestamp: int = 1


def letter(key: bytes | None, value: bytes | None, limit: int = 65_536, head: int = 4_096) -> tuple[bytes | None, DeadLetter, int]:
    dlq_key, encoded = dead_letter(DeadLetterRequest(Rec(key, value), "oversize", "e" * 5000, "ingest"),
                                   max_envelope_bytes=limit, head_bytes=head)
    return dlq_key, msgspec.json.decode(encoded, type=DeadLetter), len(encoded)


def test_a_small_record_is_carried_whole() -> None:
    key, dead, _ = letter(b"acme:demo:EURUSD", b'{"v":1}')
    assert key == b"acme:demo:EURUSD" and not dead.value_truncated and base64.b64decode(dead.value_b64 or "") == b'{"v":1}'
    assert dead.value_sha256 == hashlib.sha256(b'{"v":1}').hexdigest() and dead.stage == "ingest"
    assert len(dead.error) == 2048


@pytest.mark.parametrize("size", [60_000, 1_000_000, 6_500_000])
def test_a_large_record_is_carried_by_reference(size: int) -> None:
    value = bytes(range(256)) * (size // 256)
    _, dead, encoded = letter(b"k", value, limit=65_536)
    assert encoded <= 65_536 and dead.value_truncated and dead.value_size == len(value)
    assert base64.b64decode(dead.value_b64 or "") == value[:4096]
    assert dead.value_sha256 == hashlib.sha256(value).hexdigest()
    assert (dead.topic, dead.partition, dead.offset) == ("mt5.ticks.v1", 4, 77)


def test_a_huge_key_is_cut_and_the_dead_letter_keyed_by_its_hash() -> None:
    key = b"k" * 2_000_000
    dlq_key, dead, encoded = letter(key, b"{}")
    assert encoded <= 65_536 and dead.key_truncated
    assert dlq_key == b"sha256:" + hashlib.sha256(key).hexdigest().encode()
    assert base64.b64decode(dead.key_b64 or "") == key[:MAX_KEY_BYTES]
