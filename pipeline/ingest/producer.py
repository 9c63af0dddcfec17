"""A producer for MT5 bridges (and the simulator and importer): ticks and signals
to tickwire's topics, with the right key, encoding and partitioning.

Records are validated against the schema before they are sent, so a bridge
learns at once that it produces something the pipeline would dead-letter.
``flush`` returns when the broker has acknowledged everything sent so far.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import msgspec
import orjson

from pipeline.config import Settings
from pipeline.contracts.schemas import Signal, Tick
from pipeline.contracts.topics import SIGNALS_TOPIC, TICKS_TOPIC
from pipeline.core.kafka import make_producer
from pipeline.core.kafka import start as kafka_start

_tick_decoder = msgspec.json.Decoder(Tick)
_signal_decoder = msgspec.json.Decoder(Signal)


#: The furthest a trade server's clock is from UTC (UTC-12 .. UTC+14).
MAX_UTC_OFFSET_HOURS = 14.0


def utc_offset_ms(hours: float) -> int:
    """Milliseconds of a broker's UTC offset; ``ValueError`` beyond +-14 h."""
    if isinstance(hours, bool) or not isinstance(hours, (int, float)) or not math.isfinite(hours):
        raise ValueError(f"utc_offset_hours must be a number, got {hours!r}")
    if abs(hours) > MAX_UTC_OFFSET_HOURS:
        raise ValueError(f"utc_offset_hours must be within +-{MAX_UTC_OFFSET_HOURS:g}, got {hours:g}")
    return round(hours * 3_600_000)



class DeliveryError(RuntimeError):
    """The broker did not acknowledge some records."""


class InvalidMessage(ValueError):
    """The message does not match its schema; the message says which field."""


def encode_tick(
    tenant: str, broker: str, symbol: str, time_msc: int, bid: float, ask: float,
    last: float = 0.0, volume: int = 0, volume_real: float = 0.0, flags: int = 0,
) -> bytes:
    """The ``tick.v1`` JSON of one tick (integers stay JSON integers)."""
    return orjson.dumps({
        "v": 1, "tenant": tenant, "broker": broker, "symbol": symbol, "time_msc": int(time_msc),
        "bid": bid, "ask": ask, "last": last, "volume": int(volume), "volume_real": volume_real, "flags": int(flags),
    })


def encode_signal(**fields: Any) -> bytes:
    """The ``signal.v1`` JSON of one signal (``None`` optional fields are left out)."""
    body = {"v": 1, **{k: v for k, v in fields.items() if v is not None}}
    body["time_msc"] = int(body["time_msc"])
    return orjson.dumps(body)


class MT5Producer:
    """Async producer of ``tick.v1`` and ``signal.v1`` records. Use ``async with``."""

    def __init__(self, settings: Settings, *, validate: bool = True, server_utc_offset_hours: float = 0.0) -> None:
        """``server_utc_offset_hours``: the trade server's offset from UTC (MT5 reports times in the server's zone,
        often UTC+2/+3); every ``time_msc`` given to :meth:`send_tick` and :meth:`send_signal` is converted to UTC by
        subtracting it. The topic contract is UTC."""
        self._offset_ms = utc_offset_ms(server_utc_offset_hours)
        self._settings = settings
        self._producer = make_producer(settings)
        self._validate = validate
        self._deliveries: list[asyncio.Future[object]] = []
        self.sent = 0

    async def __aenter__(self) -> MT5Producer:
        """Connect; raises :class:`pipeline.core.kafka.KafkaSetupError` (one line naming the setting) if it cannot."""
        await kafka_start(self._producer, self._settings)
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                await self.flush()
        finally:
            await self._producer.stop()

    async def send_raw(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        """Queue one record as is (no validation; a None value is a tombstone); awaits only buffer space.
        ``flush`` reports failures."""
        self._deliveries.append(await self._producer.send(topic, value, key=key))
        self.sent += 1
        if len(self._deliveries) >= 10_000:
            await self._settle(self._deliveries[:5_000])
            del self._deliveries[:5_000]

    async def send_tick(self, **tick: Any) -> None:
        if self._offset_ms:
            tick["time_msc"] = int(tick["time_msc"]) - self._offset_ms
        value = encode_tick(**tick)
        if self._validate:
            _check(_tick_decoder, value)
        key = f"{tick['tenant']}:{tick['broker']}:{tick['symbol']}".encode()
        await self.send_raw(TICKS_TOPIC, key, value)

    async def send_signal(self, **signal: Any) -> None:
        if self._offset_ms:
            signal["time_msc"] = int(signal["time_msc"]) - self._offset_ms
        value = encode_signal(**signal)
        if self._validate:
            _check(_signal_decoder, value)
        key = f"{signal['tenant']}:{signal['broker']}:{signal['symbol']}".encode()
        await self.send_raw(SIGNALS_TOPIC, key, value)

    async def flush(self) -> None:
        """Wait until the broker acknowledged every record sent; raise if any was refused."""
        await self._producer.flush()
        deliveries, self._deliveries = self._deliveries, []
        await self._settle(deliveries)

    @staticmethod
    async def _settle(deliveries: list[asyncio.Future[object]]) -> None:
        results = await asyncio.gather(*deliveries, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise DeliveryError(f"{len(failures)} of {len(results)} records were not delivered: {failures[0]!r}")


def _check(decoder: msgspec.json.Decoder[Tick] | msgspec.json.Decoder[Signal], value: bytes) -> None:
    try:
        decoder.decode(value)
    except msgspec.MsgspecError as exc:
        raise InvalidMessage(str(exc)) from None
