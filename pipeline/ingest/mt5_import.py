"""Import MT5's exported tick files (Symbols -> Ticks -> Export) into ``mt5.ticks.v1``.

The file is tab separated with the header
``<DATE>\\t<TIME>\\t<BID>\\t<ASK>\\t<LAST>\\t<VOLUME>\\t<FLAGS>`` (columns are
found by name; DATE, TIME, BID and ASK are required), dates ``2024.01.02``,
times ``00:00:00.123`` in the broker's server time. MT5 writes it as UTF-16 LE
with a BOM; UTF-16 without BOM and UTF-8 (with or without BOM) are read too.

Contract of the parsed ticks:

- MT5 leaves BID, ASK or LAST empty when it did not change: the last known
  value is carried forward (LAST is 0 until the first deal). A row before both
  BID and ASK are known is skipped, with its reason (the side it has still
  counts as known).
- VOLUME belongs to the row's own deal: empty means 0, and ``volume`` is the
  whole part of ``volume_real``.
- FLAGS is taken as written; when the column is absent or empty it is derived
  from which cells are filled (BID, ASK, LAST, VOLUME).
- ``time_msc`` is UTC: server time minus ``utc_offset_hours`` (one fixed
  offset for the whole file, so a file spanning a DST change needs two runs).
- A line that cannot be parsed is skipped with its line number and reason;
  it never updates the carried-forward values. Blank lines are ignored.
"""

from __future__ import annotations

import asyncio
import codecs
import datetime as dt
import io
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NamedTuple, TypedDict

from pipeline.contracts import schemas
from pipeline.contracts.schemas import TICK_FLAG_ASK, TICK_FLAG_BID, TICK_FLAG_LAST, TICK_FLAG_VOLUME
from pipeline.ingest.producer import MT5Producer, utc_offset_ms

REQUIRED_COLUMNS = ("DATE", "TIME", "BID", "ASK")
OPTIONAL_COLUMNS = ("LAST", "VOLUME", "FLAGS")
MAX_TIME_MSC = 4_102_444_800_000
MAX_PRICE = 1e9
MAX_VOLUME = 1e15
#: An :class:`ImportReport` keeps the first this many skipped lines (it counts all).
MAX_REPORTED_SKIPS = 100
PROGRESS_INTERVAL_S = 0.25
#: Yield to the event loop (the producer's sender) after this many ticks.
_YIELD_EVERY = 1000
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_DAY_MS = 86_400_000


class MT5FileError(ValueError):
    """The file as a whole is not an MT5 tick export (empty, or a header without the tick columns)."""


class TickFields(TypedDict):
    """One parsed tick: ``MT5Producer.send_tick`` fields without tenant, broker and symbol."""

    time_msc: int
    bid: float
    ask: float
    last: float
    volume: int
    volume_real: float
    flags: int


@dataclass(frozen=True, slots=True)
class SkippedLine:
    """A line that was not imported: its 1-based number in the file and why."""

    line: int
    reason: str


class _BadCell(ValueError):
    """A cell of a row cannot be used; the message is the skip reason."""


def detect_encoding(head: bytes) -> str:
    """The codec of a file starting with ``head``: BOM first, else UTF-16 LE by its NULs, else UTF-8."""
    if head.startswith(codecs.BOM_UTF16_LE) or head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16"  # the codec reads the BOM and drops it
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if len(head) >= 4 and head[1] == 0 and head[3] == 0 and head[0] != 0:
        return "utf-16-le"
    return "utf-8"


class _Row(NamedTuple):
    """The cells of one line as values; None where a cell is empty (unchanged) or the column absent."""

    time_msc: int
    bid: float | None
    ask: float | None
    last: float | None
    volume_real: float | None
    flags: int | None


class MT5TickReader:
    """An open MT5 tick export: iterate for :class:`TickFields` and :class:`SkippedLine` in file order.

    Opening reads the header and raises :class:`MT5FileError` (or ``OSError``)
    if the file is not a tick export. Use as a context manager or ``close()``.
    """

    def __init__(self, path: str | Path, *, utc_offset_hours: float = 0.0) -> None:
        self._offset_ms = utc_offset_ms(utc_offset_hours)
        self.path = Path(path)
        self.size = self.path.stat().st_size
        self._raw: BinaryIO = self.path.open("rb")
        try:
            self.encoding = detect_encoding(self._raw.read(4))
            self._raw.seek(0)
            self._text = io.TextIOWrapper(self._raw, encoding=self.encoding, errors="replace", newline=None)
            names = _header_names(self._text.readline())
        except BaseException:
            self._raw.close()
            raise
        self._width = len(names)
        self._required = tuple(names.index(n) for n in REQUIRED_COLUMNS)  # _header_names checked they are there
        self._optional = tuple(names.index(n) if n in names else None for n in OPTIONAL_COLUMNS)
        self._day_ms: dict[str, int] = {}

    @property
    def bytes_read(self) -> int:
        """How far into the file reading has got (in whole buffered chunks)."""
        return self._raw.tell()

    def __iter__(self) -> Iterator[TickFields | SkippedLine]:
        bid: float | None = None
        ask: float | None = None
        last = 0.0
        for number, line in enumerate(self._text, start=2):
            if not line.strip():
                continue
            try:
                row = self._parse(line.rstrip("\r\n").split("\t"))
            except _BadCell as exc:
                yield SkippedLine(number, str(exc))
                continue
            bid = row.bid if row.bid is not None else bid
            ask = row.ask if row.ask is not None else ask
            last = row.last if row.last is not None else last
            if bid is None or ask is None:
                missing = "BID" if bid is None else "ASK"
                yield SkippedLine(number, f"no {missing} known yet (MT5 leaves unchanged sides empty)")
                continue
            volume_real = row.volume_real or 0.0
            flags = row.flags if row.flags is not None else _derived_flags(row)
            yield TickFields(time_msc=row.time_msc, bid=bid, ask=ask, last=last, volume=int(volume_real),
                             volume_real=volume_real, flags=flags)

    def _parse(self, cells: list[str]) -> _Row:
        if len(cells) > self._width:
            raise _BadCell(f"{len(cells)} columns, the header has {self._width}")
        cells += [""] * (self._width - len(cells))
        i_date, i_time, i_bid, i_ask = self._required
        i_last, i_volume, i_flags = self._optional
        return _Row(
            time_msc=self._time_msc(cells[i_date], cells[i_time]),
            bid=_price("BID", cells[i_bid]),
            ask=_price("ASK", cells[i_ask]),
            last=_price("LAST", cells[i_last]) if i_last is not None else None,
            volume_real=_volume(cells[i_volume]) if i_volume is not None else None,
            flags=_flags(cells[i_flags]) if i_flags is not None else None,
        )

    def _time_msc(self, date_text: str, time_text: str) -> int:
        day_ms = self._day_ms.get(date_text)
        if day_ms is None:
            day_ms = self._day_ms[date_text] = _parse_day_ms(date_text)
        time_msc = day_ms + _parse_time_ms(time_text) - self._offset_ms
        if not 0 <= time_msc <= MAX_TIME_MSC:
            raise _BadCell(f"time {date_text} {time_text} is outside 1970..2100 in UTC")
        return time_msc

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> MT5TickReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_mt5_ticks(path: str | Path, *, utc_offset_hours: float = 0.0) -> Iterator[TickFields | SkippedLine]:
    """The ticks and skipped lines of an MT5 tick export, in file order (see the module docstring).

    Raises :class:`MT5FileError` or ``OSError`` (when iteration starts) if the
    file is not a readable tick export; bad lines are yielded, never raised.
    """
    with MT5TickReader(path, utc_offset_hours=utc_offset_hours) as reader:
        yield from reader


def _header_names(header: str) -> list[str]:
    if not header.strip():
        raise MT5FileError("the file is empty (expected an MT5 tick export header)")
    names = [cell.strip().strip("<>").upper() for cell in header.rstrip("\r\n").split("\t")]
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        raise MT5FileError(
            f"not an MT5 tick export: the tab-separated header lacks {', '.join(f'<{m}>' for m in missing)} "
            f"(got {header.strip()[:120]!r})"
        )
    return names


def _parse_day_ms(text: str) -> int:
    try:
        year, month, day = (int(part) for part in text.split("."))
        return (dt.date(year, month, day).toordinal() - _EPOCH_ORDINAL) * _DAY_MS
    except ValueError:
        raise _BadCell(f"DATE {text!r} is not YYYY.MM.DD") from None


def _parse_time_ms(text: str) -> int:
    try:
        hours, minutes, seconds = text.split(":")
        whole, _, fraction = seconds.partition(".")
        h, m, s = int(hours), int(minutes), int(whole)
        if fraction and not fraction.isdigit():
            raise ValueError(fraction)
        ms = int(fraction.ljust(3, "0")[:3]) if fraction else 0
    except ValueError:
        raise _BadCell(f"TIME {text!r} is not HH:MM:SS[.mmm]") from None
    if not (0 <= h < 24 and 0 <= m < 60 and 0 <= s < 60):
        raise _BadCell(f"TIME {text!r} is not a time of day")
    return ((h * 60 + m) * 60 + s) * 1000 + ms


def _number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _BadCell(f"{name} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise _BadCell(f"{name} {text!r} is not a finite number")
    return value


def _price(name: str, text: str) -> float | None:
    """The price in ``text``; None when the cell is empty (unchanged)."""
    if not text:
        return None
    value = _number(name, text)
    if not 0 < value <= MAX_PRICE:
        raise _BadCell(f"{name} {text!r} is not a price (0 < price <= 1e9)")
    return value


def _volume(text: str) -> float | None:
    if not text:
        return None
    value = _number("VOLUME", text)
    if not 0 <= value <= MAX_VOLUME:
        raise _BadCell(f"VOLUME {text!r} is not within 0..1e15")
    return value


def _flags(text: str) -> int | None:
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise _BadCell(f"FLAGS {text!r} is not an integer") from None
    if not 0 <= value <= 255:
        raise _BadCell(f"FLAGS {text!r} is not within 0..255")
    return value


def _derived_flags(row: _Row) -> int:
    """The TICK_FLAG_* bits of the cells a row has filled."""
    filled = ((row.bid, TICK_FLAG_BID), (row.ask, TICK_FLAG_ASK), (row.last, TICK_FLAG_LAST),
              (row.volume_real, TICK_FLAG_VOLUME))
    return sum(flag for value, flag in filled if value is not None)


@dataclass(frozen=True)
class ImportProgress:
    """Where a running import is: ticks and skips so far, and how much of the file is read (for an ETA)."""

    elapsed_s: float
    ticks: int
    skipped: int
    bytes_read: int
    total_bytes: int

    @property
    def fraction(self) -> float:
        return min(1.0, self.bytes_read / self.total_bytes) if self.total_bytes else 1.0


@dataclass
class ImportReport:
    """What an import did: ticks produced, every skip counted, the first :data:`MAX_REPORTED_SKIPS` kept."""

    path: Path
    encoding: str
    ticks: int = 0
    skipped: int = 0
    skipped_lines: list[SkippedLine] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Ticks/s."""
        return self.ticks / self.seconds if self.seconds > 0 else 0.0

    def skip(self, line: SkippedLine) -> None:
        self.skipped += 1
        if len(self.skipped_lines) < MAX_REPORTED_SKIPS:
            self.skipped_lines.append(line)


def check_key(tenant: str, broker: str, symbol: str) -> None:
    """Raise ``ValueError`` unless the names match the tick schema's patterns."""
    for name, value, pattern in (("tenant", tenant, schemas.TENANT), ("broker", broker, schemas.BROKER),
                                 ("symbol", symbol, schemas.SYMBOL)):
        try:
            pattern.check(name, value)
        except ValueError:
            raise ValueError(f"{name} {value!r} does not match the schema's pattern {pattern.regex!r}") from None


async def import_mt5(
    producer: MT5Producer,
    path: str | Path,
    *,
    tenant: str,
    broker: str,
    symbol: str,
    utc_offset_hours: float = 0.0,
    on_progress: Callable[[ImportProgress], None] | None = None,
) -> ImportReport:
    """Produce every tick of an MT5 tick export as ``tenant:broker:symbol``; flush; report.

    Raises ``ValueError`` for a bad key or offset, :class:`MT5FileError` or
    ``OSError`` for an unreadable file (all before anything is produced). Bad
    lines are skipped and reported. ``on_progress`` is called a few times per
    second and once at the end.
    """
    check_key(tenant, broker, symbol)
    started = time.monotonic()
    with MT5TickReader(path, utc_offset_hours=utc_offset_hours) as reader:
        report = ImportReport(reader.path, reader.encoding)
        next_progress = started + PROGRESS_INTERVAL_S
        for item in reader:
            if isinstance(item, SkippedLine):
                report.skip(item)
                continue
            await producer.send_tick(tenant=tenant, broker=broker, symbol=symbol, **item)
            report.ticks += 1
            if report.ticks % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
                now = time.monotonic()
                if on_progress is not None and now >= next_progress:
                    on_progress(ImportProgress(now - started, report.ticks, report.skipped,
                                               reader.bytes_read, reader.size))
                    next_progress = now + PROGRESS_INTERVAL_S
        await producer.flush()
        report.seconds = time.monotonic() - started
        if on_progress is not None:
            on_progress(ImportProgress(report.seconds, report.ticks, report.skipped,
                                       reader.size, reader.size))
    return report
