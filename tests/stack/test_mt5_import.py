"""Importing MT5 tick exports: encodings, carried-forward sides, UTC offsets, reported skips."""

from __future__ import annotations

import codecs
import datetime as dt
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from pipeline.cli.produce import import_mt5 as import_mt5_command
from pipeline.config import Settings, load_settings
from pipeline.contracts.schemas import TICK_FLAG_ASK, TICK_FLAG_BID, TICK_FLAG_LAST, TICK_FLAG_VOLUME, Tick
from pipeline.contracts.topics import TICKS_TOPIC
from pipeline.ingest.mt5_import import (
    ImportProgress,
    MT5FileError,
    SkippedLine,
    TickFields,
    detect_encoding,
    import_mt5,
    read_mt5_ticks,
)
from pipeline.ingest.producer import MT5Producer
from tests.topic_reader import read_topic

HEADER = "<DATE>\t<TIME>\t<BID>\t<ASK>\t<LAST>\t<VOLUME>\t<FLAGS>"
ROWS = [
    "2024.01.02\t00:00:00.123\t1.10372\t\t\t\t2",       # 2: no ASK yet -> skipped (BID is now known)
    "2024.01.02\t00:00:00.200\t\t1.10384\t\t\t4",       # 3: ASK arrives -> first tick, BID carried
    "2024.01.02\t00:00:01.5\t1.10375\t\t\t\t2",         # 4: ASK carried; ".5" is 500 ms
    "2024.01.02\t00:00:0x\t1.1\t1.2\t\t\t6",            # 5: malformed time
    "",                                                 # 6: blank, ignored
    "2024.01.02\t00:00:02\t1.10380\t1.10390\t\t\t6",    # 7: both sides
    "2024.01.02\t00:00:03\tabc\t1.10390\t\t\t2",        # 8: bad BID
    "2024.01.02\t00:00:04\t1.10381\t\t\t\t2\textra",    # 9: too many columns
    "2024.01.02\t00:00:05\t\t1.10395\t\t\t",            # 10: no FLAGS -> derived (ASK)
]

ENCODINGS = {
    "utf-16-le with BOM": lambda text: codecs.BOM_UTF16_LE + text.encode("utf-16-le"),
    "utf-16-le without BOM": lambda text: text.encode("utf-16-le"),
    "utf-16-be with BOM": lambda text: codecs.BOM_UTF16_BE + text.encode("utf-16-be"),
    "utf-8": lambda text: text.encode("utf-8"),
    "utf-8 with BOM": lambda text: codecs.BOM_UTF8 + text.encode("utf-8"),
}


def write(path: Path, rows: list[str], encoding: str = "utf-16-le with BOM", header: str = HEADER) -> Path:
    """An MT5-style export (CRLF line ends, as MT5 writes them)."""
    path.write_bytes(ENCODINGS[encoding]("\r\n".join([header, *rows]) + "\r\n"))
    return path


def utc_ms(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.timezone.utc).timestamp() * 1000)


def split(items: list[TickFields | SkippedLine]) -> tuple[list[TickFields], list[SkippedLine]]:
    return [i for i in items if not isinstance(i, SkippedLine)], [i for i in items if isinstance(i, SkippedLine)]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_reads_every_encoding_with_carried_forward_sides(tmp_path, encoding):
    ticks, skipped = split(list(read_mt5_ticks(write(tmp_path / "t.csv", ROWS, encoding))))

    base = utc_ms(2024, 1, 2)
    assert ticks == [
        {"time_msc": base + 200, "bid": 1.10372, "ask": 1.10384, "last": 0.0, "volume": 0, "volume_real": 0.0,
         "flags": TICK_FLAG_ASK},
        {"time_msc": base + 1500, "bid": 1.10375, "ask": 1.10384, "last": 0.0, "volume": 0, "volume_real": 0.0,
         "flags": TICK_FLAG_BID},
        {"time_msc": base + 2000, "bid": 1.10380, "ask": 1.10390, "last": 0.0, "volume": 0, "volume_real": 0.0,
         "flags": TICK_FLAG_BID | TICK_FLAG_ASK},
        {"time_msc": base + 5000, "bid": 1.10380, "ask": 1.10395, "last": 0.0, "volume": 0, "volume_real": 0.0,
         "flags": TICK_FLAG_ASK},
    ]
    assert [s.line for s in skipped] == [2, 5, 8, 9]
    assert "no ASK known yet" in skipped[0].reason
    assert "TIME '00:00:0x'" in skipped[1].reason
    assert "BID 'abc' is not a number" in skipped[2].reason
    assert "8 columns, the header has 7" in skipped[3].reason


@pytest.mark.parametrize(
    ("prefix", "encoding"),
    [(codecs.BOM_UTF16_LE + b"<\x00", "utf-16"), (codecs.BOM_UTF16_BE + b"\x00<", "utf-16"),
     (codecs.BOM_UTF8 + b"<D", "utf-8-sig"), (b"<\x00D\x00", "utf-16-le"), (b"<DAT", "utf-8")],
)
def test_detect_encoding(prefix, encoding):
    assert detect_encoding(prefix) == encoding


@pytest.mark.parametrize(("offset", "expected"), [(0, utc_ms(2024, 7, 1, 0, 0, 0)), (2, utc_ms(2024, 6, 30, 22)),
                                                  (-5, utc_ms(2024, 7, 1, 5)), (5.5, utc_ms(2024, 6, 30, 18, 30))])
def test_server_time_is_converted_to_utc(tmp_path, offset, expected):
    path = write(tmp_path / "t.csv", ["2024.07.01\t00:00:00.007\t1.1\t1.2\t\t\t6"])
    (tick,) = read_mt5_ticks(path, utc_offset_hours=offset)
    assert tick["time_msc"] == expected + 7


def test_last_is_carried_and_volume_belongs_to_its_deal(tmp_path):
    rows = ["2024.01.02\t10:00:00.000\t230.01\t230.03\t230.02\t150\t" + str(2 | 4 | 8 | 16 | 32),
            "2024.01.02\t10:00:00.010\t230.02\t\t\t\t2",
            "2024.01.02\t10:00:00.020\t\t\t230.03\t0.5\t"]
    ticks, skipped = split(list(read_mt5_ticks(write(tmp_path / "t.csv", rows, "utf-8"))))
    assert not skipped
    assert [(t["last"], t["volume"], t["volume_real"]) for t in ticks] == [(230.02, 150, 150.0), (230.02, 0, 0.0),
                                                                        (230.03, 0, 0.5)]
    assert ticks[0]["flags"] == 62 and ticks[2]["flags"] == TICK_FLAG_LAST | TICK_FLAG_VOLUME


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("2024.02.30\t00:00:00\t1.1\t1.2\t\t\t6", "DATE '2024.02.30' is not YYYY.MM.DD"),
        ("2024.01.02\t25:00:00\t1.1\t1.2\t\t\t6", "TIME '25:00:00' is not a time of day"),
        ("2024.01.02\t00:00:00\t-1.1\t1.2\t\t\t6", "BID '-1.1' is not a price"),
        ("2024.01.02\t00:00:00\t1.1\tnan\t\t\t6", "ASK 'nan' is not a finite number"),
        ("2024.01.02\t00:00:00\t1.1\t1.2\t\t-3\t6", "VOLUME '-3' is not within"),
        ("2024.01.02\t00:00:00\t1.1\t1.2\t\t\t256", "FLAGS '256' is not within 0..255"),
        ("2024.01.02\t00:00:00\t1.1\t1.2\t\t\tsix", "FLAGS 'six' is not an integer"),
        ("1969.12.31\t23:00:00\t1.1\t1.2\t\t\t6", "outside 1970..2100"),
        ("garbage", "DATE 'garbage' is not YYYY.MM.DD"),
    ],
)
def test_bad_lines_are_reported_not_raised(tmp_path, row, reason):
    rows = ["2024.01.02\t00:00:00\t1.0\t1.1\t\t\t6", row, "2024.01.02\t00:00:09\t1.05\t\t\t\t2"]
    ticks, skipped = split(list(read_mt5_ticks(write(tmp_path / "t.csv", rows))))
    assert [s.line for s in skipped] == [3] and reason in skipped[0].reason
    assert [(t["bid"], t["ask"]) for t in ticks] == [(1.0, 1.1), (1.05, 1.1)], "a bad line must not update sides"


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"a,b,c\n1,2,3\n", "lacks <DATE>, <TIME>, <BID>, <ASK>"),
     ("<DATE>\t<TIME>\t<LAST>\n".encode("utf-16"), "lacks <BID>, <ASK>")],
)
def test_a_file_that_is_no_tick_export_is_an_error(tmp_path, content, message):
    path = tmp_path / "t.csv"
    path.write_bytes(content)
    with pytest.raises(MT5FileError, match=message):
        list(read_mt5_ticks(path))


async def consumed_ticks(settings: Settings, key: bytes, expected: int) -> list[Tick]:
    records = await read_topic(settings, TICKS_TOPIC, key, expected)
    return [msgspec.json.decode(value, type=Tick) for record_key, value in records if record_key == key]


@pytest.mark.stack
async def test_import_produces_ticks_and_reports_skips(broker_settings, tenant, tmp_path):
    progress: list[ImportProgress] = []
    async with MT5Producer(broker_settings) as producer:
        report = await import_mt5(producer, write(tmp_path / "t.csv", ROWS), tenant=tenant, broker="demo",
                                  symbol="EURUSD", utc_offset_hours=2, on_progress=progress.append)

    assert (report.ticks, report.skipped, report.encoding) == (4, 4, "utf-16")
    assert [s.line for s in report.skipped_lines] == [2, 5, 8, 9]
    ticks = await consumed_ticks(broker_settings, f"{tenant}:demo:EURUSD".encode(), expected=4)
    assert len(ticks) == 4
    assert ticks[0].time_msc == utc_ms(2024, 1, 1, 22) + 200
    assert progress[-1].fraction == 1.0 and progress[-1].ticks == 4


async def test_import_rejects_a_bad_key_before_reading(tmp_path):
    with pytest.raises(ValueError, match="tenant 'ACME'"):
        await import_mt5(MT5Producer(load_settings()), tmp_path / "missing.csv",
                         tenant="ACME", broker="demo", symbol="EURUSD")


def test_cli_reports_a_bad_file_without_a_traceback(tmp_path):
    path = tmp_path / "not-ticks.csv"
    path.write_text("hello\n")
    result = CliRunner().invoke(import_mt5_command, [str(path), "--tenant", "acme", "--broker", "demo",
                                                     "--symbol", "EURUSD"])
    assert result.exit_code == 2
    assert "not an MT5 tick export" in result.output and "Traceback" not in result.output


@pytest.mark.stack
async def test_import_reaches_the_broker(broker_settings: Settings, tenant, tmp_path):
    rows = [f"2024.01.02\t00:00:{i // 1000:02}.{i % 1000:03}\t{1.1 + i * 1e-5:.5f}\t{1.1002 + i * 1e-5:.5f}\t\t\t6"
            for i in range(500)]
    path = write(tmp_path / "EURUSD.csv", rows)
    async with MT5Producer(broker_settings) as producer:
        report = await import_mt5(producer, path, tenant=tenant, broker="demo", symbol="EURUSD")
    assert (report.ticks, report.skipped) == (500, 0)

    found = await consumed_ticks(broker_settings, f"{tenant}:demo:EURUSD".encode(), expected=report.ticks)
    assert [t.time_msc for t in found] == [utc_ms(2024, 1, 2) + i for i in range(500)]
    assert found[-1].bid == round(1.1 + 499e-5, 5)
