"""``tickwire dlq list|show|retry``: inspect dead letters and re-submit them after a fix.

Most tests write ``dlq.v1`` envelopes themselves (``dead_letter``) straight to the
DLQ, each test under a stage name of its own (``--stage``) so that it sees only its
letters, and give truncated letters a source topic of their own.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import msgspec
import orjson
import pytest

from pipeline.config import Settings
from pipeline.contracts.catalog import Catalog, TopicSpec, apply_catalog
from pipeline.contracts.schemas import DeadLetter
from pipeline.contracts.topics import DLQ_TOPIC, TICKS_TOPIC
from pipeline.core.dead_letters import DeadLetterRequest, dead_letter
from pipeline.core.kafka import make_producer
from pipeline.devstack.worker_process import settings_env
from pipeline.ingest.producer import MT5Producer, encode_tick
from pipeline.ops.dead_letters import LetterFilter, NewestLetters, newest_dead_letters, scan_dead_letters
from pipeline.ops.sql_client import worker_query
from tests.stack.test_ticks_pipeline import produce
from tests.topic_reader import read_topic
from tests.waiting import wait_until

pytestmark = pytest.mark.stack

ENVELOPE_FIELDS = set(DeadLetter.__struct_fields__)


def cli(settings, *args: str, columns: bool = True, **env: str) -> subprocess.CompletedProcess:
    """Run ``tickwire ARGS`` against ``settings``; ``columns=False``: no COLUMNS, as from a script or a pipe."""
    base = {k: v for k, v in os.environ.items() if columns or k != "COLUMNS"}
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, timeout=120,
                          env={**base, **settings_env(settings), **({"COLUMNS": "250"} if columns else {}), **env})


@dataclass
class Record:
    """A consumed record as ``dead_letter`` needs it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = 1_763_900_000_000


async def _send(settings: Settings, records: list[tuple[str, bytes | None, bytes | None]]) -> list[tuple[int, int]]:
    """Produce (topic, key, value) in order; their (partition, offset)."""
    producer = make_producer(settings)
    await producer.start()
    try:
        return [((md := await (await producer.send(topic, value, key=key))).partition, md.offset)
                for topic, key, value in records]
    finally:
        await producer.stop()


def send(settings: Settings, topic: str, key: bytes | None, value: bytes | None) -> tuple[int, int]:
    return asyncio.run(_send(settings, [(topic, key, value)]))[0]


def write_letter(settings: Settings, record: Record, *, stage: str, reason: str = "schema_violation",
                 error: str = "bad", max_envelope_bytes: int = 262_144, head_bytes: int = 4096) -> tuple[str, DeadLetter]:
    """Write the dead letter of ``record`` to the DLQ; its position ``P:O`` and envelope."""
    key, value = dead_letter(DeadLetterRequest(record, reason, error, stage),  # type: ignore[arg-type]
                             max_envelope_bytes=max_envelope_bytes, head_bytes=head_bytes)
    partition, offset = send(settings, DLQ_TOPIC, key, value)
    return f"{partition}:{offset}", msgspec.json.decode(value, type=DeadLetter)


@pytest.fixture
def source_topic(stack_settings: Settings, tenant: str) -> str:
    """A topic of this test's own (1 partition) for the originals of truncated letters."""
    name = f"dlqtest.{tenant}"
    spec = TopicSpec(name=name, partitions=1, retention_ms=3_600_000, cleanup_policy="delete", key="any", schema="tick.v1")
    asyncio.run(apply_catalog(Catalog(topics=[spec]), stack_settings.bootstrap_servers))
    return name


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The stderr of a failed command: exactly one line, no traceback, no unclosed-client warning."""
    assert "Traceback" not in result.stderr and "Unclosed" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_dead_letter_is_listed_shown_and_stored_once_retried_after_the_fix(stack_settings, worker_factory, tenant):
    # a valid tick padded with whitespace to 600 bytes: oversize for a worker that accepts 400
    padded = encode_tick(tenant=tenant, broker="demo", symbol="EURUSD", time_msc=1_763_900_000_000, bid=1.1, ask=1.2)
    padded = padded[:-1] + b" " * (600 - len(padded)) + b"}"
    strict = worker_factory(max_record_bytes=400)
    asyncio.run(produce(stack_settings, [], raw=[(f"{tenant}:demo:EURUSD".encode(), padded)]))

    listed = wait_until(lambda: tenant in (out := cli(stack_settings, "dlq", "list", "--reason", "oversize", "--limit", "5000").stdout) and out,
                        timeout_s=300, what="the dead letter in the list")  # a new group reads the shared topic's backlog first
    line = next(line for line in listed.splitlines() if tenant in line)
    position = line.split("│")[1].strip()
    shown = cli(stack_settings, "dlq", "show", position)
    assert shown.returncode == 0 and '"reason": "oversize"' in shown.stdout and tenant in shown.stdout

    count = f"SELECT count() AS n FROM tickwire.ticks FINAL WHERE tenant = '{tenant}'"
    assert orjson.loads(worker_query(strict.settings, count)[0])["n"] == 0
    strict.stop()
    relaxed = worker_factory(max_record_bytes=65_536)  # the fix
    for _ in range(2):  # retrying twice stores it once
        retried = cli(stack_settings, "dlq", "retry", "--position", position)
        assert retried.returncode == 0 and "re-submitted 1" in retried.stdout
    wait_until(lambda: orjson.loads(worker_query(relaxed.settings, count)[0])["n"] == 1, timeout_s=30, what="the retried tick")


def test_keys_values_and_errors_are_listed_and_shown_literally_never_as_markup(stack_settings, tenant):
    stage = f"test-{tenant}"
    value = f'{{"tenant": "{tenant}", "note": "[bold]loud[/bold]"}}'.encode()
    error = "field [red]note[/red] is not " + "x" * 80  # > 80 columns with the rest of the row
    markup, _ = write_letter(stack_settings, Record(TICKS_TOPIC, 0, 0, b"[/x]", value), stage=stage, error=error)
    hostile, _ = write_letter(stack_settings, Record(TICKS_TOPIC, 0, 1, b"[/x]\x1b[2J\xff", b"\x1b]0;owned\x07"),
                              stage=stage)

    listed = cli(stack_settings, "dlq", "list", "--stage", stage, columns=False)  # not a terminal, no COLUMNS
    assert listed.returncode == 0, listed.stderr
    rows = {line.split("│")[1].strip(): line for line in listed.stdout.splitlines() if line.count("│") > 2}
    assert set(rows) == {markup, hostile}
    assert "│ [/x] " in rows[markup] and error in rows[markup]  # one line, whole error, markup kept as text
    assert "[/x]\\x1b[2J\\xff" in rows[hostile] and "\x1b" not in listed.stdout

    shown = cli(stack_settings, "dlq", "show", markup)
    assert shown.returncode == 0, shown.stderr
    assert "\n[/x]\n" in shown.stdout and "\n" + value.decode() + "\n" in shown.stdout and error in shown.stdout
    assert f'"dlq": "{markup}"' in shown.stdout and '"stage": "' + stage in shown.stdout
    shown = cli(stack_settings, "dlq", "show", hostile)
    assert shown.returncode == 0 and "\x1b" not in shown.stdout and "\\x1b]0;owned\\x07" in shown.stdout


def test_list_json_has_every_envelope_field_and_the_position(stack_settings, tenant):
    stage = f"test-{tenant}"
    written = [write_letter(stack_settings, Record(TICKS_TOPIC, 3, 7 + i, key, b'{"v": 1}'), stage=stage, error=f"e{i}")
               for i, key in enumerate([b"[/x]", b"\xff\xfe", None])]

    listed = cli(stack_settings, "dlq", "list", "--stage", stage, "--json")
    assert listed.returncode == 0, listed.stderr
    objects = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [o["dlq"] for o in objects] == [position for position, _ in written]  # oldest first
    for obj, (_, letter) in zip(objects, written):
        assert set(obj) == ENVELOPE_FIELDS | {"dlq", "key", "value"}
        assert {name: obj[name] for name in ENVELOPE_FIELDS} == msgspec.to_builtins(letter)
        assert obj["value"] == '{"v": 1}' and obj["topic"] == TICKS_TOPIC and obj["partition"] == 3
    assert [o["key"] for o in objects] == ["[/x]", "\\xff\\xfe", None]
    assert base64.b64decode(objects[1]["key_b64"]) == b"\xff\xfe"


def test_show_fetches_a_truncated_value_from_its_source_and_checks_its_hash(stack_settings, tenant, source_topic):
    stage = f"test-{tenant}"
    whole = (f'{{"tenant": "{tenant}", "pad": "' + "[i]0123456789" * 2000 + '"}').encode()  # 26 KB
    [(_, at), (_, other_at)] = asyncio.run(_send(stack_settings, [(source_topic, b"k1", whole), (source_topic, b"k1", b"other")]))
    small = dict(max_envelope_bytes=16_384, head_bytes=64)
    position, letter = write_letter(stack_settings, Record(source_topic, 0, at, b"k1", whole), stage=stage,
                                    reason="oversize", **small)
    assert letter.value_truncated and len(base64.b64decode(letter.value_b64)) == 64  # the letter holds the head only

    shown = cli(stack_settings, "dlq", "show", position)
    assert shown.returncode == 0, shown.stderr
    assert f"fetched from {source_topic}[0]@{at}, SHA-256 verified" in shown.stdout
    assert "\n" + whole.decode() + "\n" in shown.stdout
    as_json = json.loads(cli(stack_settings, "dlq", "show", position, "--json").stdout)
    original = as_json["original"]
    assert original["status"] == "fetched" and base64.b64decode(original["value_b64"]) == whole
    assert hashlib.sha256(base64.b64decode(original["value_b64"])).hexdigest() == as_json["value_sha256"]

    # a letter whose source offset holds another record: that record is not passed off as the original
    wrong, _ = write_letter(stack_settings, Record(source_topic, 0, other_at, b"k1", whole), stage=stage,
                            reason="oversize", **small)
    shown = cli(stack_settings, "dlq", "show", wrong, "--json")
    assert shown.returncode == 0, shown.stderr
    original = json.loads(shown.stdout)["original"]
    assert original["status"] == "mismatch" and "holds another record" in original["detail"]
    assert base64.b64decode(original["value_b64"]) == whole[:64]


def test_a_truncated_letter_whose_source_is_gone_is_shown_as_not_retained_and_never_retried(stack_settings, tenant,
                                                                                              source_topic):
    stage = f"test-{tenant}"
    whole = b"[b]" + b"z" * 30_000
    position, _ = write_letter(stack_settings, Record(source_topic, 0, 1_000_000, b"k", whole), stage=stage,
                               reason="oversize", max_envelope_bytes=16_384, head_bytes=50)

    shown = cli(stack_settings, "dlq", "show", position)
    assert shown.returncode == 0, shown.stderr
    assert f"not retained any more in its source: {source_topic}[0]@1000000" in shown.stdout
    assert "\n" + whole[:50].decode() + "\n" in shown.stdout  # the head, said to be one

    retried = cli(stack_settings, "dlq", "retry", "--position", position)
    assert retried.returncode == 0, retried.stderr
    assert "re-submitted 0 dead letters (of 1 selected)" in retried.stdout and "no longer retained: 1" in retried.stdout
    # the retry flushed before it exited: a re-submitted head would be in the topic by now
    assert asyncio.run(read_topic(stack_settings, source_topic, b"", expected=1, timeout_s=3)) == []


def test_retry_resubmits_the_whole_original_of_truncated_letters(stack_settings, tenant, source_topic):
    stage = f"test-{tenant}"
    big_value = b'{"big": "' + b"v" * 40_000 + b'"}'
    long_key = f"{tenant}:".encode() + b"k" * 1500
    records = [(source_topic, f"{tenant}:a".encode(), big_value), (source_topic, long_key, b"small")]
    offsets = asyncio.run(_send(stack_settings, records))
    positions = []
    for (topic, key, value), (partition, offset) in zip(records, offsets):
        position, letter = write_letter(stack_settings, Record(topic, partition, offset, key, value), stage=stage,
                                        max_envelope_bytes=16_384, head_bytes=100)
        assert letter.value_truncated or letter.key_truncated
        positions.append(position)

    retried = cli(stack_settings, "dlq", "retry", "--stage", stage)
    assert retried.returncode == 0, retried.stderr
    assert "re-submitted 2 dead letters (of 2 selected)" in retried.stdout
    found = asyncio.run(read_topic(stack_settings, source_topic, tenant.encode(), expected=4))
    originals = [(key, value) for _, key, value in records]
    assert found[:2] == originals and sorted(found[2:]) == sorted(originals)  # then the whole re-submissions


@pytest.mark.parametrize("position", ["abc", "1:", "-1:2", "1:2:3", " "])
def test_a_malformed_position_is_one_line_on_stderr_and_exit_2(stack_settings, position):
    shown = cli(stack_settings, "dlq", "show", position)
    assert shown.returncode == 2 and shown.stdout == ""
    assert "bad DLQ position" in one_line_error(shown)


def test_a_position_without_a_letter_is_one_line_and_exit_1(stack_settings):
    for position in ("0:999999999", "77:0"):
        shown = cli(stack_settings, "dlq", "show", position)
        assert shown.returncode == 1 and shown.stdout == ""
        assert one_line_error(shown).startswith(f"no dead letter at {position}")


@pytest.mark.parametrize("command", [["list"], ["list", "--json"], ["show", "0:0"], ["retry", "--position", "0:0"]])
def test_an_unreachable_broker_is_one_line_naming_the_setting_and_exit_1(stack_settings, command):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"kafka://127.0.0.1:{sock.getsockname()[1]}"
    started = time.monotonic()
    result = cli(stack_settings, "dlq", *command, TICKWIRE_BROKER_URL=closed)
    assert result.returncode == 1 and result.stdout == ""
    assert f"TICKWIRE_BROKER_URL={closed}" in one_line_error(result)
    assert time.monotonic() - started < 30


def test_list_keeps_only_the_newest_n_while_it_scans_many_letters(stack_settings, tenant):
    stage, total, limit = f"test-{tenant}", 20_000, 7
    key, value = dead_letter(DeadLetterRequest(Record(TICKS_TOPIC, 0, 0, b"k", b"{}"), "malformed_json", "e", stage),
                             max_envelope_bytes=262_144, head_bytes=64)
    template = msgspec.json.decode(value, type=DeadLetter)
    encoder = msgspec.json.Encoder()

    async def write_all() -> None:
        async with MT5Producer(stack_settings, validate=False) as producer:
            for i in range(total):  # failure times 0..total-1: the newest are the last written
                letter = msgspec.structs.replace(template, failed_at_ms=i, error=f"n{i}")
                await producer.send_raw(DLQ_TOPIC, key, encoder.encode(letter))

    asyncio.run(write_all())
    newest_errors = [f"n{i}" for i in range(total - limit, total)]

    letters, counts = asyncio.run(newest_dead_letters(stack_settings, limit, LetterFilter(stage=stage)))
    assert counts.matched == total and counts.scanned >= total
    assert [item.letter.error for item in letters] == newest_errors  # oldest first

    async def scan_keeping() -> tuple[NewestLetters, int]:  # what newest_dead_letters keeps, watched at every letter
        kept, most = NewestLetters(limit), 0
        async for item in scan_dead_letters(stack_settings):
            if item.letter.stage == stage:
                kept.offer(item)
                most = max(most, len(kept))
        return kept, most

    kept, most = asyncio.run(scan_keeping())
    assert most == limit and [item.letter.error for item in kept.letters()] == newest_errors

    listed = cli(stack_settings, "dlq", "list", "--stage", stage, "--limit", "3", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(line)["error"] for line in listed.stdout.splitlines()] == newest_errors[-3:]
    table = cli(stack_settings, "dlq", "list", "--stage", stage, "--limit", "3")
    assert f"3 newest of {total:,} matching dead letters" in table.stdout
