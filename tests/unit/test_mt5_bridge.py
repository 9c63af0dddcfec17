"""examples/mt5_bridge.py without a terminal: its conversion, batching and polling loop.

The MT5 terminal (and the ``MetaTrader5`` package, Windows only) is not available here, so the
bridge's MT5 calls run against a stand-in module that records them; the ticks are numpy structured
arrays shaped like ``mt5.copy_ticks_from``'s answer.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import numpy as np
import pytest

from pipeline.contracts.schemas import Tick
from pipeline.ingest.producer import encode_tick

ROOT = Path(__file__).resolve().parents[2]
TICK_DTYPE = np.dtype([("time", "<i8"), ("bid", "<f8"), ("ask", "<f8"), ("last", "<f8"), ("volume", "<u8"),
                       ("time_msc", "<i8"), ("flags", "<u4"), ("volume_real", "<f8")])
HOUR_MS = 3_600_000
#: 2026-03-02 10:00:00.000 on a trade server at UTC+2
SERVER_MS = 1_772_445_600_000


def load_bridge() -> Any:  # noqa: ANN401 - the module
    spec = importlib.util.spec_from_file_location("mt5_bridge", ROOT / "examples" / "mt5_bridge.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["mt5_bridge"] = module
    spec.loader.exec_module(module)
    return module


bridge = load_bridge()


def mt5_ticks(*rows: tuple[int, float, float]) -> np.ndarray:
    """(time_msc, bid, ask) rows as copy_ticks_from returns them (last 0, volume 0 for forex, flags bid|ask)."""
    return np.array([(ms // 1000, bid, ask, 0.0, 0, ms, 6, 0.0) for ms, bid, ask in rows], dtype=TICK_DTYPE)


def test_rows_become_plain_python_numbers_in_mt5_order() -> None:
    array = np.array([(SERVER_MS // 1000, 1.1, 1.2, 1.15, 3, SERVER_MS, 0x5E, 3.5)], dtype=TICK_DTYPE)
    (row,) = bridge.rows_of(array)
    assert row == {"time": SERVER_MS // 1000, "bid": 1.1, "ask": 1.2, "last": 1.15, "volume": 3, "time_msc": SERVER_MS,
                   "flags": 0x5E, "volume_real": 3.5}
    assert all(type(value) in (int, float) for value in row.values()), {k: type(v) for k, v in row.items()}
    assert set(bridge.TICK_FIELDS) == set(TICK_DTYPE.names)
    assert bridge.rows_of(None) == [] and bridge.rows_of(np.array([], dtype=TICK_DTYPE)) == []


def test_ticks_are_converted_from_server_time_to_utc_and_are_valid_tick_v1() -> None:
    array = np.array([(SERVER_MS // 1000, 1.08412, 1.08415, 0.0, 0, SERVER_MS, 6, 0.0),
                      (SERVER_MS // 1000, 1.08413, 1.08416, 1.08414, 2, SERVER_MS + 7, 0x1E, 2.0)], dtype=TICK_DTYPE)
    ticks, skipped = bridge.to_ticks(bridge.rows_of(array), tenant="acme", broker="icm", symbol="EURUSD",
                                     utc_offset_ms=2 * HOUR_MS)
    assert skipped == 0
    assert [t["time_msc"] for t in ticks] == [SERVER_MS - 2 * HOUR_MS, SERVER_MS + 7 - 2 * HOUR_MS]
    assert ticks[1] == {"tenant": "acme", "broker": "icm", "symbol": "EURUSD", "time_msc": SERVER_MS + 7 - 2 * HOUR_MS,
                        "bid": 1.08413, "ask": 1.08416, "last": 1.08414, "volume": 2, "volume_real": 2.0, "flags": 0x1E}
    for tick in ticks:  # what MT5Producer would send passes the topic's schema
        decoded = msgspec.json.decode(encode_tick(**tick), type=Tick)
        assert decoded.key == "acme:icm:EURUSD"
    west, _ = bridge.to_ticks(bridge.rows_of(array[:1]), tenant="a", broker="b", symbol="S", utc_offset_ms=-5 * HOUR_MS)
    assert west[0]["time_msc"] == SERVER_MS + 5 * HOUR_MS


def test_a_tick_without_both_prices_is_skipped_and_counted() -> None:
    rows = bridge.rows_of(mt5_ticks((SERVER_MS, 0.0, 1.2), (SERVER_MS + 1, 1.1, 0.0), (SERVER_MS + 2, 1.1, 1.2)))
    ticks, skipped = bridge.to_ticks(rows, tenant="a", broker="b", symbol="S", utc_offset_ms=0)
    assert skipped == 2 and [t["time_msc"] for t in ticks] == [SERVER_MS + 2]


def test_unseen_drops_what_was_sent_even_within_one_millisecond() -> None:
    rows = bridge.rows_of(mt5_ticks((SERVER_MS - 5, 1.0, 1.1), (SERVER_MS, 1.0, 1.1), (SERVER_MS, 1.01, 1.1),
                                    (SERVER_MS, 1.02, 1.1), (SERVER_MS + 3, 1.03, 1.1)))
    fresh, cursor = bridge.unseen(rows, bridge.Cursor(SERVER_MS, sent_at_time=2))
    assert [(r["time_msc"], r["bid"]) for r in fresh] == [(SERVER_MS, 1.02), (SERVER_MS + 3, 1.03)]
    assert cursor == bridge.Cursor(SERVER_MS + 3, 1)
    # the third tick of the millisecond extends the count instead of resetting it
    fresh, cursor = bridge.unseen(rows[:4], bridge.Cursor(SERVER_MS, sent_at_time=2))
    assert [r["bid"] for r in fresh] == [1.02] and cursor == bridge.Cursor(SERVER_MS, 3)
    # nothing new: nothing sent, the cursor stays
    assert bridge.unseen(rows[:4], bridge.Cursor(SERVER_MS, 3)) == ([], bridge.Cursor(SERVER_MS, 3))
    # a fresh cursor (nothing sent at its millisecond) takes every tick from it on
    fresh, cursor = bridge.unseen(rows, bridge.Cursor(SERVER_MS))
    assert len(fresh) == 4 and cursor == bridge.Cursor(SERVER_MS + 3, 1)


def test_batches_cover_every_item_once_in_order() -> None:
    items = list(range(2_501))
    chunks = list(bridge.batches(items, 1_000))
    assert [len(c) for c in chunks] == [1_000, 1_000, 501] and [i for c in chunks for i in c] == items
    assert list(bridge.batches([], 10)) == []
    with pytest.raises(ValueError):
        list(bridge.batches(items, 0))


class FakeMT5:
    """The MetaTrader5 module's calls the bridge makes, on a tick history that grows between polls."""

    COPY_TICKS_ALL = -1

    def __init__(self, history: np.ndarray, arrivals: list[np.ndarray], stop: asyncio.Event) -> None:
        self.history, self.arrivals, self.stop = history, arrivals, stop
        self.calls: list[tuple[Any, ...]] = []

    def initialize(self, **kwargs: Any) -> bool:
        self.calls.append(("initialize", kwargs))
        return True

    def symbol_select(self, symbol: str, enable: bool) -> bool:
        self.calls.append(("symbol_select", symbol, enable))
        return True

    def symbol_info_tick(self, symbol: str) -> SimpleNamespace:
        self.calls.append(("symbol_info_tick", symbol))
        return SimpleNamespace(time_msc=int(self.history["time_msc"][-1]), bid=float(self.history["bid"][-1]))

    def copy_ticks_from(self, symbol: str, date_from: int, count: int, flags: int) -> np.ndarray:
        self.calls.append(("copy_ticks_from", symbol, date_from, count, flags))
        answer = self.history[self.history["time"] >= date_from][:count]
        if self.arrivals:
            self.history = np.concatenate([self.history, self.arrivals.pop(0)])
        else:
            self.stop.set()
        return answer

    def last_error(self) -> tuple[int, str]:
        return (1, "Success")

    def shutdown(self) -> None:
        self.calls.append(("shutdown",))


class RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.flushed_at: list[int] = []

    async def send_tick(self, **tick: Any) -> None:
        self.sent.append(tick)

    async def flush(self) -> None:
        self.flushed_at.append(len(self.sent))


async def test_the_loop_sends_each_new_tick_once_in_flushed_batches_and_stops_cleanly() -> None:
    stop = asyncio.Event()
    history = mt5_ticks((SERVER_MS - 60_000, 1.0, 1.1), (SERVER_MS, 1.1, 1.2))
    arrivals = [mt5_ticks((SERVER_MS, 1.11, 1.2), (SERVER_MS + 400, 1.12, 1.2), (SERVER_MS + 1_300, 0.0, 1.2)),
                mt5_ticks(*[(SERVER_MS + 2_000 + i, 1.2 + i / 1e4, 1.3) for i in range(5)])]
    mt5 = FakeMT5(history, arrivals, stop)
    source = bridge.MT5Source(mt5, path="C:/MT5/terminal64.exe", login=None)
    source.open(["EURUSD"])
    producer = RecordingProducer()
    stats = await asyncio.wait_for(
        bridge.run_bridge(source, producer, ["EURUSD"], tenant="acme", broker="icm", utc_offset_hours=2, stop=stop,
                          poll_s=0.01, batch=2), timeout=10)
    source.close()

    # from the newest tick on (the older one is history), every tick once, in order, in UTC; the one without a bid
    # skipped; a millisecond shared by two ticks does not lose the second
    assert [(t["time_msc"] + 2 * HOUR_MS, t["bid"]) for t in producer.sent] == [
        (SERVER_MS, 1.1), (SERVER_MS, 1.11), (SERVER_MS + 400, 1.12),
        *[(SERVER_MS + 2_000 + i, 1.2 + i / 1e4) for i in range(5)]]
    assert stats.sent == 8 and stats.skipped == 1 and stats.per_symbol == {"EURUSD": 8}
    assert producer.flushed_at == [1, 3, 5, 7, 8]  # batches of 2, each flushed before the next
    assert mt5.calls[:3] == [("initialize", {"path": "C:/MT5/terminal64.exe"}), ("symbol_select", "EURUSD", True),
                             ("symbol_info_tick", "EURUSD")]
    polls = [call for call in mt5.calls if call[0] == "copy_ticks_from"]
    # each poll starts at the second of the last tick seen (the skipped one too: it was seen)
    assert [p[2] for p in polls] == [SERVER_MS // 1000, SERVER_MS // 1000, (SERVER_MS + 1_300) // 1000]
    assert all(p[1] == "EURUSD" and p[3] == 100_000 and p[4] == FakeMT5.COPY_TICKS_ALL for p in polls)
    assert mt5.calls[-1] == ("shutdown",)


async def test_since_minutes_starts_before_the_newest_tick_and_a_set_stop_ends_at_once() -> None:
    stop = asyncio.Event()
    history = mt5_ticks((SERVER_MS - 90_000, 1.0, 1.1), (SERVER_MS - 30_000, 1.05, 1.1), (SERVER_MS, 1.1, 1.2))
    mt5 = FakeMT5(history, [], stop)
    producer = RecordingProducer()
    await bridge.run_bridge(bridge.MT5Source(mt5), producer, ["EURUSD"], tenant="acme", broker="icm",
                            utc_offset_hours=0, stop=stop, since_ms=60_000)
    assert [t["time_msc"] for t in producer.sent] == [SERVER_MS - 30_000, SERVER_MS]
    stop.set()
    again = RecordingProducer()
    stats = await asyncio.wait_for(bridge.run_bridge(bridge.MT5Source(mt5), again, ["EURUSD"], tenant="acme",
                                                     broker="icm", utc_offset_hours=0, stop=stop, poll_s=60), timeout=5)
    assert stats.polls == 0 and again.sent == []


def test_without_the_metatrader5_package_the_bridge_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "MetaTrader5", None)  # the import fails, as everywhere but on Windows
    with pytest.raises(bridge.BridgeError, match="pip install MetaTrader5"):
        bridge.MT5Source().open(["EURUSD"])
    # the command line: a bad offset stops it before anything is opened; then the missing package, in one line
    assert bridge.main(["--tenant", "a", "--broker", "b", "--utc-offset", "15", "EURUSD"]) == 2
    assert "utc_offset_hours must be within +-14" in capsys.readouterr().err
    assert bridge.main(["--tenant", "a", "--broker", "b", "--utc-offset", "2", "EURUSD"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("mt5_bridge: the MetaTrader5 package is missing")
