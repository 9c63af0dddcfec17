"""A reference MT5 bridge: ticks from a MetaTrader 5 terminal to ``mt5.ticks.v1``.

It runs beside the terminal, on Windows, with tickwire's base install (no extra: no store client, no
uvloop) and the ``MetaTrader5`` package::

    pip install tickwire MetaTrader5
    set TICKWIRE_BROKER_URL=kafka://redpanda.example:9092
    set TICKWIRE_KAFKA_SECURITY_PROTOCOL=SASL_SSL          (and the other TICKWIRE_KAFKA_* settings)
    python mt5_bridge.py --tenant acme --broker icmarkets --utc-offset 2 EURUSD GBPUSD

What it does, per symbol, every ``--poll-ms``:

- asks the terminal for the ticks since the last one it sent (``mt5.copy_ticks_from(symbol, second,
  count, mt5.COPY_TICKS_ALL)``; MT5 takes whole seconds, so the answer starts at the second of the last
  tick sent and :func:`unseen` drops what was sent already, counting the ticks that share its very
  millisecond);
- converts them (:func:`to_ticks`): MT5's ``time_msc`` is the trade server's clock, the topic contract
  is UTC, so ``--utc-offset`` hours are subtracted (one fixed offset: restart the bridge with the new
  one when the server changes to or from summer time); a tick without both a bid and an ask (MT5
  reports 0 before the first quote) cannot be a ``tick.v1`` and is counted as skipped;
- sends them with :class:`~pipeline.ingest.producer.MT5Producer` in batches of ``--batch``, each flushed
  (acknowledged by the broker) before the next, and moves the symbol's cursor only after all of them
  were acknowledged.

It starts at each symbol's newest tick (``mt5.symbol_info_tick``), or ``--since-minutes`` before it.
Ctrl-C (SIGINT) or SIGTERM stops it after the batch in hand: the producer flushes, then
``mt5.shutdown()``. A tick may be sent twice after a crash (its cursor had not moved); tickwire
stores it once.

The MetaTrader5 package exists on Windows only, so it is imported in :meth:`MT5Source.open`, not here:
this module imports anywhere, and its conversion and batching are tested without a terminal
(tests/unit/test_mt5_bridge.py, on arrays shaped like ``copy_ticks_from``'s). It does not need numpy
either (MetaTrader5 brings it on Windows).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from pipeline.config import SettingsError, load_settings
from pipeline.core.kafka import KafkaSetupError
from pipeline.ingest.producer import DeliveryError, MT5Producer, utc_offset_ms

log = logging.getLogger("mt5_bridge")
T = TypeVar("T")

#: The fields of ``copy_ticks_from``'s structured array (numpy dtype names).
TICK_FIELDS = ("time", "bid", "ask", "last", "volume", "time_msc", "flags", "volume_real")


class BridgeError(RuntimeError):
    """The terminal cannot give what the bridge needs; the message says what to check."""


@dataclass(frozen=True)
class Cursor:
    """Where a symbol's stream stands: the server time (ms) of the newest tick sent, and how many ticks of
    exactly that millisecond were sent (MT5 can report several in one millisecond)."""

    time_msc: int
    sent_at_time: int = 0


def rows_of(ticks: Any) -> list[dict[str, Any]]:  # noqa: ANN401 - a numpy structured array, or None
    """``copy_ticks_from``'s answer (a numpy structured array, or None when MT5 has nothing or failed) as dicts of
    plain Python numbers, in MT5's order (oldest first)."""
    if ticks is None or len(ticks) == 0:
        return []
    names = ticks.dtype.names
    return [dict(zip(names, values)) for values in ticks.tolist()]


def unseen(rows: Sequence[dict[str, Any]], cursor: Cursor) -> tuple[list[dict[str, Any]], Cursor]:
    """The rows after ``cursor`` (oldest first, as MT5 gives them) and the cursor once they are sent."""
    fresh: list[dict[str, Any]] = []
    already = cursor.sent_at_time
    newest, at_newest = cursor.time_msc, cursor.sent_at_time
    for row in rows:
        time_msc = int(row["time_msc"])
        if time_msc < cursor.time_msc:
            continue
        if time_msc == cursor.time_msc and already > 0:
            already -= 1
            continue
        fresh.append(row)
        if time_msc == newest:
            at_newest += 1
        else:
            newest, at_newest = time_msc, 1
    return fresh, Cursor(newest, at_newest)


def to_ticks(rows: Iterable[dict[str, Any]], *, tenant: str, broker: str, symbol: str,
             utc_offset_ms: int) -> tuple[list[dict[str, Any]], int]:
    """``MT5Producer.send_tick`` fields of each row, ``time_msc`` converted from the server's clock to UTC
    (minus ``utc_offset_ms``); and how many rows were skipped for want of a bid or an ask."""
    ticks: list[dict[str, Any]] = []
    skipped = 0
    for row in rows:
        bid, ask = float(row["bid"]), float(row["ask"])
        if not (bid > 0 and ask > 0):
            skipped += 1
            continue
        ticks.append({
            "tenant": tenant, "broker": broker, "symbol": symbol,
            "time_msc": int(row["time_msc"]) - utc_offset_ms,
            "bid": bid, "ask": ask, "last": float(row["last"]),
            "volume": int(row["volume"]), "volume_real": float(row["volume_real"]), "flags": int(row["flags"]),
        })
    return ticks, skipped


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start:start + size]


class TickSource(Protocol):
    """What the bridge asks the terminal (:class:`MT5Source`; tests give a stand-in)."""

    def newest_time_msc(self, symbol: str) -> int: ...

    def ticks_since(self, symbol: str, time_msc: int, count: int) -> Any: ...  # noqa: ANN401 - numpy array or None


class TickSink(Protocol):
    """What the bridge needs of the producer (:class:`~pipeline.ingest.producer.MT5Producer`)."""

    async def send_tick(self, **tick: Any) -> None: ...

    async def flush(self) -> None: ...


class MT5Source:
    """The terminal, through the ``MetaTrader5`` package (imported by :meth:`open`: it exists on Windows only)."""

    def __init__(self, module: Any = None, **initialize: Any) -> None:  # noqa: ANN401 - the MetaTrader5 module
        """``initialize``: keyword arguments of ``mt5.initialize`` (``path``, ``login``, ``password``, ``server``)."""
        self._mt5 = module
        self._initialize = {name: value for name, value in initialize.items() if value is not None}

    def open(self, symbols: Iterable[str]) -> None:
        if self._mt5 is None:
            try:
                import MetaTrader5
            except ImportError:
                raise BridgeError("the MetaTrader5 package is missing: pip install MetaTrader5 "
                                  "(it exists for Windows only, where the terminal runs)") from None
            self._mt5 = MetaTrader5
        if not self._mt5.initialize(**self._initialize):
            raise BridgeError(f"mt5.initialize() failed: {self._mt5.last_error()} (is the terminal running and logged in?)")
        for symbol in symbols:
            if not self._mt5.symbol_select(symbol, True):
                raise BridgeError(f"symbol {symbol!r} cannot be selected in Market Watch: {self._mt5.last_error()}")

    def newest_time_msc(self, symbol: str) -> int:
        tick = self._mt5.symbol_info_tick(symbol)
        if tick is None:
            raise BridgeError(f"no tick for {symbol!r}: {self._mt5.last_error()}")
        return int(tick.time_msc)

    def ticks_since(self, symbol: str, time_msc: int, count: int) -> Any:  # noqa: ANN401 - numpy array or None
        # MT5 takes the start as whole seconds of its own (server) clock, the clock of time_msc.
        ticks = self._mt5.copy_ticks_from(symbol, time_msc // 1000, count, self._mt5.COPY_TICKS_ALL)
        if ticks is None:
            log.warning("copy_ticks_from(%s) failed: %s", symbol, self._mt5.last_error())
        return ticks

    def close(self) -> None:
        if self._mt5 is not None:
            self._mt5.shutdown()


@dataclass
class BridgeStats:
    polls: int = 0
    sent: int = 0
    skipped: int = 0
    per_symbol: dict[str, int] = field(default_factory=dict)


async def run_bridge(source: TickSource, producer: TickSink, symbols: Sequence[str], *, tenant: str, broker: str,
                     utc_offset_hours: float, stop: asyncio.Event, poll_s: float = 0.1, batch: int = 1000,
                     max_ticks: int = 100_000, since_ms: int = 0) -> BridgeStats:
    """Poll ``source`` for every symbol and send its new ticks through ``producer`` until ``stop`` is set."""
    offset_ms = utc_offset_ms(utc_offset_hours)
    cursors = {symbol: Cursor(source.newest_time_msc(symbol) - since_ms) for symbol in symbols}
    stats = BridgeStats(per_symbol=dict.fromkeys(symbols, 0))
    while not stop.is_set():
        stats.polls += 1
        more_waiting = False
        for symbol in symbols:
            answer = rows_of(source.ticks_since(symbol, cursors[symbol].time_msc, max_ticks))
            rows, cursor = unseen(answer, cursors[symbol])
            ticks, skipped = to_ticks(rows, tenant=tenant, broker=broker, symbol=symbol, utc_offset_ms=offset_ms)
            for chunk in batches(ticks, batch):
                for tick in chunk:
                    await producer.send_tick(**tick)
                await producer.flush()
            cursors[symbol] = cursor
            stats.sent += len(ticks)
            stats.skipped += skipped
            stats.per_symbol[symbol] += len(ticks)
            # a full answer may have left ticks behind: ask again at once (unless nothing moved)
            more_waiting = more_waiting or (len(answer) >= max_ticks and bool(rows))
            if stop.is_set():
                break
        if not more_waiting:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_s)
    return stats


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows: no loop signal handlers
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("symbols", nargs="+", help="MT5 symbols, as named in the terminal")
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--broker", required=True, help="the broker name in the topic key (tenant:broker:symbol)")
    parser.add_argument("--utc-offset", type=float, required=True,
                        help="the trade server's offset from UTC in hours (e.g. 2 or 3 for most brokers)")
    parser.add_argument("--poll-ms", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1000, help="ticks per flush")
    parser.add_argument("--since-minutes", type=float, default=0.0, help="start this long before the newest tick")
    parser.add_argument("--terminal", default=None, help="path of terminal64.exe (default: the one MT5 finds)")
    return parser.parse_args(argv)


async def bridge(args: argparse.Namespace) -> BridgeStats:
    utc_offset_ms(args.utc_offset)  # a bad offset stops the bridge before it connects to anything
    settings = load_settings()  # TICKWIRE_BROKER_URL and the TICKWIRE_KAFKA_* security settings
    stop = asyncio.Event()
    _stop_on_signals(stop)
    source = MT5Source(path=args.terminal)
    source.open(args.symbols)
    try:
        async with MT5Producer(settings) as producer:  # the bridge converts times itself: no offset here
            return await run_bridge(source, producer, args.symbols, tenant=args.tenant, broker=args.broker,
                                    utc_offset_hours=args.utc_offset, stop=stop, poll_s=args.poll_ms / 1000,
                                    batch=args.batch, since_ms=round(args.since_minutes * 60_000))
    finally:
        source.close()


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        stats = asyncio.run(bridge(args))
    except (BridgeError, SettingsError, ValueError, KafkaSetupError, DeliveryError) as exc:
        print(f"mt5_bridge: {exc}", file=sys.stderr)
        return 2
    log.info("stopped: %d ticks sent (%s), %d skipped without bid or ask", stats.sent,
             ", ".join(f"{symbol} {count}" for symbol, count in stats.per_symbol.items()), stats.skipped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
