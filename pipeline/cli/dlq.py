"""``tickwire dlq list|show|retry``: look at dead letters and re-submit them after a fix."""

from __future__ import annotations

import asyncio
import base64
import sys

import click
from rich.console import Console
from rich.table import Table

from pipeline.config import SettingsError, get_settings
from pipeline.ingest.producer import MT5Producer
from pipeline.ops.dead_letters import read_dead_letters

console = Console()
err = Console(stderr=True)


def _settings():  # type: ignore[no-untyped-def]
    try:
        return get_settings()
    except SettingsError as exc:
        err.print(f"[red]{exc}[/red]")
        sys.exit(2)


@click.group()
def dlq() -> None:
    """Look at dead letters and re-submit them after a fix."""


def _letters(reason: str | None):  # type: ignore[no-untyped-def]
    letters = asyncio.run(read_dead_letters(_settings().bootstrap_servers))
    return [(p, o, letter) for p, o, letter in letters if reason is None or letter.reason == reason]


@dlq.command("list")
@click.option("--reason", help="Only this reason (e.g. schema_violation).")
@click.option("--limit", default=50, show_default=True)
def dlq_list(reason: str | None, limit: int) -> None:
    """Dead letters, newest last: where they came from and why."""
    letters = _letters(reason)
    table = Table("dlq", "source", "key", "reason", "error", title=f"{len(letters):,} dead letters")
    for partition, offset, letter in letters[-limit:]:
        key = base64.b64decode(letter.key_b64).decode("utf-8", "backslashreplace") if letter.key_b64 else ""
        table.add_row(f"{partition}:{offset}", f"{letter.topic}[{letter.partition}]@{letter.offset}", key[:60], letter.reason,
                      letter.error[:80])
    console.print(table)


@dlq.command("show")
@click.argument("position")
def dlq_show(position: str) -> None:
    """One dead letter by its DLQ position P:O, with its original bytes."""
    wanted = tuple(int(x) for x in position.split(":"))
    for partition, offset, letter in _letters(None):
        if (partition, offset) == wanted:
            console.print_json(data={"dlq": position, "reason": letter.reason, "error": letter.error, "topic": letter.topic,
                                     "partition": letter.partition, "offset": letter.offset, "timestamp_ms": letter.timestamp_ms})
            value = base64.b64decode(letter.value_b64) if letter.value_b64 else b""
            console.print(value.decode("utf-8", "backslashreplace"), highlight=False)
            return
    err.print(f"[red]no dead letter at {position}[/red]")
    sys.exit(1)


@dlq.command("retry")
@click.option("--reason", help="Only this reason.")
@click.option("--position", "positions", multiple=True, help="Only these DLQ positions P:O.")
def dlq_retry(reason: str | None, positions: tuple[str, ...]) -> None:
    """Re-produce dead letters' original bytes to their original topic (after a fix).

    Safe to repeat: a record that is now valid is stored once (idempotent sinks);
    one that is still invalid goes back to the DLQ.
    """
    wanted = {tuple(int(x) for x in p.split(":")) for p in positions}
    letters = [(p, o, letter) for p, o, letter in _letters(reason) if not wanted or (p, o) in wanted]

    async def send() -> None:
        async with MT5Producer(_settings(), validate=False) as producer:
            for _, _, letter in letters:
                key = base64.b64decode(letter.key_b64) if letter.key_b64 else None
                value = base64.b64decode(letter.value_b64) if letter.value_b64 else b""
                await producer.send_raw(letter.topic, key, value)

    asyncio.run(send())
    console.print(f"re-submitted {len(letters):,} dead letters")
