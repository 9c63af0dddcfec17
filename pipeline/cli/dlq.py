"""``tickwire dlq list|show|retry``: look at dead letters and re-submit them after a fix.

Record content (keys, values, error texts) is never interpreted as rich markup:
table cells are :class:`rich.text.Text`, everything else is written as plain
text, with bytes that are not UTF-8 and control characters escaped (``\\xNN``)
so that a record cannot drive the terminal. Data goes to stdout, errors to
stderr as one line; broker problems exit 1 within bounded time.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from datetime import datetime, timezone
from typing import Any, Coroutine, TypeVar

import click
import msgspec
from aiokafka.errors import KafkaError
from rich.table import Table
from rich.text import Text

from pipeline.cli.console import EXIT_FAILURE, EXIT_USAGE, as_text, out, print_table, terminal_text
from pipeline.cli.console import fail as _fail
from pipeline.cli.console import settings as _settings
from pipeline.config import Settings
from pipeline.contracts.schemas import DLQ_REASONS
from pipeline.core.dead_letters import original_key, original_value
from pipeline.ops.dead_letters import (
    BrokerUnavailable,
    Letter,
    LetterFilter,
    NotALetter,
    Original,
    find_dead_letter,
    newest_dead_letters,
    parse_position,
    resolve_original,
    retry_dead_letters,
)
from pipeline.ops.topic_scan import RecordReader

T = TypeVar("T")

EXIT_CODES = """\b
Exit codes: 0 ok; 1 failure (broker unreachable, letter not found,
a re-submission failed); 2 bad usage (e.g. a malformed position).
"""
KEY_WIDTH = 60
ERROR_WIDTH = 120

def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _position(text: str) -> tuple[int, int]:
    try:
        return parse_position(text)
    except ValueError as exc:
        _fail(str(exc), EXIT_USAGE)


def _run(settings: Settings, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work``; a broker that cannot be reached or fails ends the command with one line on stderr, exit 1."""
    try:
        return asyncio.run(work)
    except BrokerUnavailable as exc:
        _fail(f"cannot reach the Kafka broker at TICKWIRE_BROKER_URL={settings.broker_url} ({exc.cause}); "
              "start it (`tickwire stack up` for the local stack) or set TICKWIRE_BROKER_URL to a reachable broker",
              EXIT_FAILURE)
    except KafkaError as exc:
        _fail(f"Kafka error from the broker at TICKWIRE_BROKER_URL={settings.broker_url}: {type(exc).__name__}: {exc}",
              EXIT_FAILURE)


def _out(text: str) -> None:
    """Write data to stdout; a closed pipe (``| head``) ends the command quietly."""
    out(text)


def _time(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _bytes_fields(key: bytes | None, value: bytes | None) -> dict[str, Any]:
    return {"key_b64": None if key is None else base64.b64encode(key).decode("ascii"),
            "value_b64": None if value is None else base64.b64encode(value).decode("ascii"),
            "key": None if key is None else as_text(key), "value": None if value is None else as_text(value)}


def _letter_json(item: Letter) -> dict[str, Any]:
    """The --json object of a letter: its position, every envelope field, and the carried key and value as text."""
    key, value = original_key(item.letter), original_value(item.letter)
    return {"dlq": item.position, **msgspec.to_builtins(item.letter),
            "key": None if key is None else as_text(key), "value": None if value is None else as_text(value)}


@click.group(help=f"""Look at dead letters (topic dlq.v1) and re-submit them after a fix.

A dead letter is named by its DLQ position P:O (dlq.v1 partition and offset), as
`dlq list` shows it.

{EXIT_CODES}""")
def dlq() -> None:
    # aiokafka logs connection failures itself; with no logging set up they would reach stderr
    # (Python's last-resort handler) besides the one line these commands print.
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())


@dlq.command("list", help=f"""Dead letters, newest last (by failure time): DLQ position, failure time (UTC),
source topic[partition]@offset, stage, reason, key and error (keys and errors cut, shown as
text with non-UTF-8 bytes and control characters as \\xNN escapes).

Streams the whole DLQ and keeps only the newest --limit matching letters.

--json prints one JSON object per line instead: every field of the dlq.v1 envelope as
stored (key_b64 / value_b64: the exact bytes, base64; when value_truncated, value_b64
holds the head only), plus "dlq": "P:O" and "key" / "value": the same bytes as text
(UTF-8; bytes that are not UTF-8 as \\xNN escapes; null when absent).

{EXIT_CODES}""")
@click.option("--reason", type=click.Choice(DLQ_REASONS), help="Only this reason.")
@click.option("--stage", help="Only letters of this stage (ingest, signals, patterns, graph).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Show the newest N.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines (see above).")
def dlq_list(reason: str | None, stage: str | None, limit: int, as_json: bool) -> None:
    settings = _settings()
    letters, counts = _run(settings, newest_dead_letters(settings, limit, LetterFilter(reason=reason, stage=stage)))
    if counts.unreadable:
        click.echo(f"note: {counts.unreadable:,} records of dlq.v1 are not dlq.v1 envelopes (skipped)", err=True)
    if as_json:
        _out("".join(json.dumps(_letter_json(item)) + "\n" for item in letters))
        return
    table = Table("dlq", "failed at (UTC)", "source", "stage", "reason", "key", "error",
                  title=f"{len(letters):,} newest of {counts.matched:,} matching dead letters ({counts.scanned:,} in dlq.v1)")
    for item in letters:
        letter = item.letter
        key = base64.b64decode(letter.key_b64) if letter.key_b64 is not None else None
        key_text = "(none)" if key is None else cut(terminal_text(key, one_line=True), KEY_WIDTH)
        if letter.key_truncated:
            key_text = cut(key_text, KEY_WIDTH - 1).removesuffix("…") + "…"
        table.add_row(Text(item.position), Text(_time(letter.failed_at_ms)),
                      Text(f"{letter.topic}[{letter.partition}]@{letter.offset}"), Text(letter.stage or ""),
                      Text(letter.reason), Text(key_text),
                      Text(cut(terminal_text(letter.error.encode(), one_line=True), ERROR_WIDTH)))
    print_table(table)  # not a terminal (a pipe, a file): no line is cut or wrapped at 80 columns


def _describe_value(original: Original, letter_size: int | None) -> str:
    if original.value is None:
        return "value: none (the record had no value)"
    if original.complete:
        how = f", {original.detail}" if original.status == "fetched" else ""
        return f"value ({len(original.value):,} bytes{how}):"
    total = f" of {letter_size:,}" if letter_size is not None else ""
    return f"value: {original.detail}; showing the head the letter carries ({len(original.value):,}{total} bytes):"


@dlq.command("show", context_settings={"ignore_unknown_options": True}, help=f"""One dead letter by its DLQ position P:O: the envelope's fields, then the
original key and value as text (non-UTF-8 bytes and control characters other than
newlines and tabs as \\xNN escapes; --json for the exact bytes).

When the letter holds only the head of the value (value_truncated) or key
(key_truncated), the whole record is read from its source topic[partition]@offset
and checked against the letter's SHA-256 ("fetched from ..."); if the source no
longer retains it (or holds another record there), that is said and the head is shown.

--json prints one JSON object: the fields of `dlq list --json`, plus "original":
{{"status": "carried" | "fetched" | "not_retained" | "mismatch", "detail", "key_b64",
"value_b64", "key", "value"}} with the whole original when status is carried or fetched
(else the heads).

{EXIT_CODES}""")
@click.argument("position")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (see above).")
def dlq_show(position: str, as_json: bool) -> None:
    partition, offset = _position(position)
    settings = _settings()

    async def show() -> tuple[Letter | None, str, Original | None]:
        async with RecordReader(settings) as reader:
            try:
                item, why = await find_dead_letter(reader, partition, offset)
            except NotALetter as exc:
                return None, str(exc), None
            return item, why, None if item is None else await resolve_original(reader, item)

    item, why, original = _run(settings, show())
    if item is None or original is None:
        _fail(why if why.startswith("the record") else f"no dead letter at {partition}:{offset}: {why}", EXIT_FAILURE)
    letter = item.letter
    if as_json:
        _out(json.dumps({**_letter_json(item), "original": {
            "status": original.status, "detail": original.detail, **_bytes_fields(original.key, original.value)}}) + "\n")
        return
    header = {name: value for name, value in _letter_json(item).items() if name not in ("key_b64", "value_b64", "key", "value")}
    lines = [terminal_text(json.dumps(header, indent=2, ensure_ascii=False).encode())]
    if original.key is None:
        lines.append("key: none")
    else:
        fetched = ", " + original.detail if original.status == "fetched" and letter.key_truncated else ""
        note = "" if original.complete or not letter.key_truncated else f"; {original.detail}; the head the letter carries"
        lines += [f"key ({len(original.key):,} bytes{fetched}{note}):", terminal_text(original.key)]
    lines.append(_describe_value(original, letter.value_size))
    if original.value is not None:
        lines.append(terminal_text(original.value))
    _out("\n".join(lines) + "\n")


@dlq.command("retry", help=f"""Re-produce dead letters' original key and value to their original topic (after a fix).

Selects the letters matching all the options given (none: every letter). A letter
that holds only the head of its value or key (value_truncated / key_truncated) is
re-submitted only whole, read from its source topic[partition]@offset and checked
against the letter's SHA-256; if the source no longer retains it, or holds another
record there, the letter is skipped and counted (exit code still 0).

Safe to repeat: a record that is now valid is stored once (idempotent sinks); one that
is still invalid goes back to the DLQ.

{EXIT_CODES}""")
@click.option("--reason", type=click.Choice(DLQ_REASONS), help="Only this reason.")
@click.option("--stage", help="Only letters of this stage.")
@click.option("--position", "positions", multiple=True, help="Only these DLQ positions P:O (repeatable).")
def dlq_retry(reason: str | None, stage: str | None, positions: tuple[str, ...]) -> None:
    wanted = frozenset(_position(p) for p in positions)
    settings = _settings()
    report = _run(settings, retry_dead_letters(settings, LetterFilter(reason=reason, stage=stage, positions=wanted)))
    lines = [f"re-submitted {report.resubmitted:,} dead letters (of {report.selected:,} selected)"]
    for label, entries in (("skipped, the whole original is no longer retained", report.not_retained),
                           ("skipped, the source offset holds another record", report.mismatched)):
        if entries:
            lines.append(f"{label}: {len(entries):,} ({cut('; '.join(entries[:5]), 400)})")
    _out("\n".join(terminal_text(line.encode(), one_line=True) for line in lines) + "\n")
    if report.unreadable:
        click.echo(f"note: {report.unreadable:,} records of dlq.v1 are not dlq.v1 envelopes (skipped)", err=True)
    problems = ([f"no dead letter at {', '.join(report.missing)}"] if report.missing else []) + \
        ([f"{len(report.failed):,} failed: {'; '.join(report.failed[:3])}"] if report.failed else [])
    if problems:
        _fail(" / ".join(problems), EXIT_FAILURE)
