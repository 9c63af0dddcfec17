"""Reading the dead-letter topic and getting dead letters' original records back (``tickwire dlq``, the demo).

* :func:`scan_dead_letters` streams every letter of ``dlq.v1`` (records that are not
  ``dlq.v1`` envelopes are counted and skipped); :func:`newest_dead_letters` keeps
  only the newest ``limit`` matching ones while it scans (bounded memory).
* :func:`find_dead_letter` reads one letter by its DLQ position ``P:O`` (no scan).
* :func:`resolve_original` gives a letter's whole original key and value: carried in
  the letter, or, when the letter holds only their head (``value_truncated``,
  ``key_truncated``), read from the source topic/partition/offset and checked
  against the letter (SHA-256 and length of the value, the key or its SHA-256),
  or why they cannot be had any more.
* :func:`retry_dead_letters` re-produces the whole originals to their source topics.
"""

from __future__ import annotations

import hashlib
import heapq
import re
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import AsyncGenerator, Literal

import msgspec
from aiokafka.errors import KafkaError

from pipeline.config import Settings
from pipeline.contracts.schemas import DeadLetter
from pipeline.contracts.topics import DLQ_TOPIC
from pipeline.core.dead_letters import MAX_KEY_BYTES, original_key, original_value
from pipeline.ops.topic_scan import BrokerUnavailable, RecordReader, Source, scan_topic

__all__ = [
    "BrokerUnavailable", "Letter", "LetterFilter", "NewestLetters", "NotALetter", "Original", "RetryReport",
    "ScanCounts", "find_dead_letter", "newest_dead_letters", "parse_position", "read_dead_letters",
    "resolve_original", "retry_dead_letters", "scan_dead_letters",
]

_POSITION = re.compile(r"^([0-9]{1,10}):([0-9]{1,19})$")
_decoder = msgspec.json.Decoder(DeadLetter)
#: Records fetched per batch while scanning the DLQ (each up to TICKWIRE_DLQ_MAX_ENVELOPE_BYTES).
_SCAN_BATCH = 500


def parse_position(text: str) -> tuple[int, int]:
    """``P:O`` (DLQ partition and offset, decimal) as a pair; ``ValueError`` with the reason otherwise."""
    match = _POSITION.match(text.strip())
    if match is None or int(match[1]) >= 2**31 or int(match[2]) >= 2**63:
        raise ValueError(f"bad DLQ position {text!r}: expected PARTITION:OFFSET, two non-negative integers such as 0:42")
    return int(match[1]), int(match[2])


@dataclass(frozen=True, slots=True)
class Letter:
    """A dead letter and where it is in ``dlq.v1`` (``key`` is the DLQ record's key)."""

    partition: int
    offset: int
    key: bytes | None
    letter: DeadLetter

    @property
    def position(self) -> str:
        return f"{self.partition}:{self.offset}"


class NotALetter(ValueError):
    """The DLQ record at a position is not a ``dlq.v1`` envelope."""


@dataclass(frozen=True)
class LetterFilter:
    """Which letters a command works on; empty fields match everything."""

    reason: str | None = None
    stage: str | None = None
    positions: frozenset[tuple[int, int]] = frozenset()

    def __call__(self, item: Letter) -> bool:
        letter = item.letter
        return ((self.reason is None or letter.reason == self.reason)
                and (self.stage is None or letter.stage == self.stage)
                and (not self.positions or (item.partition, item.offset) in self.positions))


@dataclass
class ScanCounts:
    scanned: int = 0
    matched: int = 0
    unreadable: int = 0


def _decode(partition: int, offset: int, key: bytes | None, value: bytes | None) -> Letter:
    try:
        return Letter(partition, offset, key, _decoder.decode(value or b""))
    except msgspec.MsgspecError as exc:
        raise NotALetter(f"the record at {partition}:{offset} of {DLQ_TOPIC} is not a dlq.v1 envelope: {exc}") from None


async def scan_dead_letters(source: Source, counts: ScanCounts | None = None) -> AsyncGenerator[Letter, None]:
    """Every letter in the DLQ, partition by partition in offset order, read without a consumer group."""
    counts = counts if counts is not None else ScanCounts()
    async for batch in scan_topic(source, DLQ_TOPIC, max_records=_SCAN_BATCH):
        for record in batch:
            counts.scanned += 1
            try:
                yield _decode(record.partition, record.offset, record.key, record.value)
            except NotALetter:
                counts.unreadable += 1


class NewestLetters:
    """Keeps the ``limit`` newest letters offered (by failure time, then DLQ position): never more."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._heap: list[tuple[int, int, int, Letter]] = []

    def offer(self, item: Letter) -> None:
        entry = (item.letter.failed_at_ms, item.partition, item.offset, item)
        if len(self._heap) < self.limit:
            heapq.heappush(self._heap, entry)
        elif entry[:3] > self._heap[0][:3]:
            heapq.heapreplace(self._heap, entry)

    def __len__(self) -> int:
        return len(self._heap)

    def letters(self) -> list[Letter]:
        """The kept letters, oldest first."""
        return [entry[3] for entry in sorted(self._heap, key=lambda e: e[:3])]


async def newest_dead_letters(source: Source, limit: int,
                              where: LetterFilter = LetterFilter()) -> tuple[list[Letter], ScanCounts]:
    """The ``limit`` newest letters matching ``where`` (oldest first) and the scan's counts; keeps no more while it scans."""
    counts = ScanCounts()
    newest = NewestLetters(limit)
    async with aclosing(scan_dead_letters(source, counts)) as letters:
        async for item in letters:
            if where(item):
                counts.matched += 1
                newest.offer(item)
    return newest.letters(), counts


async def read_dead_letters(source: Source) -> list[tuple[int, int, DeadLetter]]:
    """All letters in the DLQ as (partition, offset, letter), in memory: for small DLQs (the demo)."""
    return [(item.partition, item.offset, item.letter) async for item in scan_dead_letters(source)]


async def find_dead_letter(reader: RecordReader, partition: int, offset: int) -> tuple[Letter | None, str]:
    """The letter at DLQ position ``partition:offset``, or ``None`` and why; :class:`NotALetter` if it is not one."""
    found = await reader.read(DLQ_TOPIC, partition, offset)
    if found.record is None:
        return None, found.missing
    return _decode(partition, offset, found.record.key, found.record.value), ""


@dataclass(frozen=True, slots=True)
class Original:
    """A letter's original record, whole (``complete``) or only what the letter carries and why.

    ``status``: ``carried`` (whole in the letter), ``fetched`` (read from the source and
    matching the letter), ``not_retained`` (the source no longer has it), ``mismatch``
    (the source offset holds another record). ``key``/``value`` are the whole original when
    complete, else the heads the letter carries.
    """

    status: Literal["carried", "fetched", "not_retained", "mismatch"]
    key: bytes | None
    value: bytes | None
    detail: str = ""

    @property
    def complete(self) -> bool:
        return self.status in ("carried", "fetched")


def _source(letter: DeadLetter) -> str:
    return f"{letter.topic}[{letter.partition}]@{letter.offset}"


def _key_mismatch(item: Letter, key: bytes | None) -> str:
    letter = item.letter
    head = original_key(letter)
    if not letter.key_truncated:
        return "" if key == head else "its key differs from the letter's"
    if key is None or len(key) <= MAX_KEY_BYTES or not key.startswith(head or b""):
        return "its key does not start with the letter's key head"
    dlq_key = item.key or b""
    if dlq_key.startswith(b"sha256:") and dlq_key[7:] != hashlib.sha256(key).hexdigest().encode():
        return "its key's SHA-256 differs from the letter's"
    return ""


def _value_mismatch(letter: DeadLetter, value: bytes | None) -> str:
    if value is None or letter.value_b64 is None:
        if value is None and letter.value_b64 is None:
            return ""
        return "it has no value" if value is None else "it has a value, the letter none"
    if letter.value_size is not None and len(value) != letter.value_size:
        return f"its value has {len(value):,} bytes, the letter says {letter.value_size:,}"
    if letter.value_sha256 is not None and hashlib.sha256(value).hexdigest() != letter.value_sha256:
        return "its value's SHA-256 differs from the letter's"
    if not letter.value_truncated and value != original_value(letter):
        return "its value differs from the letter's"
    return ""


async def resolve_original(reader: RecordReader, item: Letter) -> Original:
    """The whole original record of ``item`` (see :class:`Original`): read from the source only when needed."""
    letter = item.letter
    key, value = original_key(letter), original_value(letter)
    if not letter.value_truncated and not letter.key_truncated:
        return Original("carried", key, value)
    where = _source(letter)
    found = await reader.read(letter.topic, letter.partition, letter.offset)
    if found.record is None:
        return Original("not_retained", key, value, f"not retained any more in its source: {found.missing}")
    problem = _key_mismatch(item, found.record.key) or _value_mismatch(letter, found.record.value)
    if problem:
        return Original("mismatch", key, value, f"{where} holds another record now ({problem})")
    return Original("fetched", found.record.key, found.record.value, f"fetched from {where}, SHA-256 verified")


@dataclass
class RetryReport:
    selected: int = 0
    resubmitted: int = 0
    not_retained: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unreadable: int = 0


async def _selected(reader: RecordReader, settings: Settings, where: LetterFilter,
                    report: RetryReport) -> AsyncGenerator[Letter, None]:
    if where.positions:
        for partition, offset in sorted(where.positions):
            try:
                item, why = await find_dead_letter(reader, partition, offset)
            except NotALetter as exc:
                report.failed.append(str(exc))
                continue
            if item is None:
                report.missing.append(f"{partition}:{offset} ({why})")
            elif where(item):
                yield item
        return
    counts = ScanCounts()
    async with aclosing(scan_dead_letters(settings, counts)) as letters:
        async for item in letters:
            if where(item):
                yield item
    report.unreadable = counts.unreadable


async def retry_dead_letters(settings: Settings, where: LetterFilter) -> RetryReport:
    """Re-produce the whole original key and value of every letter matching ``where`` to its source topic.

    A letter whose original is not whole in it is read from the source first; when the
    source no longer has it (or holds another record there) the letter is skipped and
    counted, never re-submitted as a head. Safe to repeat (the pipeline's sinks are
    idempotent). Raises :class:`BrokerUnavailable` when the broker cannot be reached.
    """
    from pipeline.ingest.producer import DeliveryError, MT5Producer

    report = RetryReport()
    async with RecordReader(settings) as reader:
        producer = MT5Producer(settings, validate=False)
        try:
            await producer.__aenter__()  # stops its client when the start fails
        except (KafkaError, OSError) as exc:
            raise BrokerUnavailable(settings.bootstrap_servers, f"{type(exc).__name__}: {exc}") from exc
        try:
            async with aclosing(_selected(reader, settings, where, report)) as selected:
                async for item in selected:
                    report.selected += 1
                    original = await resolve_original(reader, item)
                    try:
                        if _resubmittable(item, original, report):
                            await producer.send_raw(item.letter.topic, original.key, original.value)
                            report.resubmitted += 1
                    except (KafkaError, DeliveryError) as exc:
                        report.failed.append(f"{item.position}: {type(exc).__name__}: {exc}")
            try:
                await producer.flush()
            except DeliveryError as exc:
                report.failed.append(str(exc))
        except BaseException as exc:
            await producer.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        await producer.__aexit__(None, None, None)
    return report


def _resubmittable(item: Letter, original: Original, report: RetryReport) -> bool:
    """Whether ``original`` can be re-submitted whole; if not, counted in ``report`` with why."""
    if original.status == "not_retained":
        report.not_retained.append(f"{item.position}: {original.detail}")
    elif original.status == "mismatch":
        report.mismatched.append(f"{item.position}: {original.detail}")
    elif original.key is None and original.value is None:
        report.failed.append(f"{item.position}: the original had neither key nor value")
    else:
        return True
    return False
