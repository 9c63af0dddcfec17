"""A small simulated market for the console tests: an hour of history ending now, signals in it, and live ticks.

Four FX-like symbols at realistic levels and spreads, whose minute returns share a common factor (EURUSD,
GBPUSD and AUDUSD positively, USDJPY negatively), so the pipeline derives correlation edges of both signs,
patterns with forward returns, every indicator, and bars that live ticks keep closing. Times are the wall
clock's (UTC ms): the history ends a minute ago, the live ticks are "now".
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import Settings
from pipeline.ingest.producer import MT5Producer

MINUTE = 60_000
#: symbol -> (start mid, half spread, decimals, loading on the common factor)
MARKET: dict[str, tuple[float, float, int, float]] = {
    "EURUSD": (1.08420, 0.00004, 5, 1.0),
    "GBPUSD": (1.26510, 0.00006, 5, 0.9),
    "AUDUSD": (0.65870, 0.00005, 5, 0.8),
    "USDJPY": (151.240, 0.006, 3, -0.9),
}
#: Settings of a worker under which an hour of 1m bars gives every indicator, patterns and correlation edges.
CONSOLE_WORKER_SETTINGS: dict[str, object] = dict(candle_timeframes="1m,5m", correlation_window_bars=30,
                                                  correlation_min_samples=10, pattern_horizon_bars=3,
                                                  outcome_horizons="5m,1h")


@dataclass
class Walk:
    """Correlated random walks of the mids of :data:`MARKET`'s symbols."""

    seed: int
    mids: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.mids = {symbol: spec[0] for symbol, spec in MARKET.items()}

    def step(self, scale: float) -> None:
        common = self.rng.gauss(0, scale)
        for symbol, (_, _, _, loading) in MARKET.items():
            own = self.rng.gauss(0, scale * 0.45)
            self.mids[symbol] *= math.exp(loading * common + own)

    def tick(self, tenant: str, broker: str, symbol: str, time_msc: int, volume: int = 1) -> dict[str, Any]:
        _, half, decimals, _ = MARKET[symbol]
        mid = self.mids[symbol]
        return dict(tenant=tenant, broker=broker, symbol=symbol, time_msc=time_msc, bid=round(mid - half, decimals),
                    ask=round(mid + half, decimals), volume=volume, flags=6)


def history(walk: Walk, tenant: str, broker: str, end_ms: int, minutes: int, symbols: tuple[str, ...] = tuple(MARKET),
            per_minute: int = 6) -> list[dict[str, Any]]:
    """``per_minute`` ticks per symbol in each of the ``minutes`` whole minutes before the one holding ``end_ms``."""
    first = (end_ms // MINUTE - minutes) * MINUTE
    ticks = []
    for minute in range(minutes):
        for i in range(per_minute):
            walk.step(6e-4 / math.sqrt(per_minute))
            at = first + minute * MINUTE + 1_000 + i * (MINUTE - 2_000) // per_minute
            ticks += [walk.tick(tenant, broker, symbol, at, volume=1 + (minute * 7 + i) % 5) for symbol in symbols]
    return ticks


def signals_in(ticks: list[dict[str, Any]], symbol: str, tenant: str, broker: str) -> list[dict[str, Any]]:
    """Buy, sell and close signals of two strategies at ticks of ``symbol`` spread over the history."""
    own = [t for t in ticks if t["symbol"] == symbol]
    plan = [(0.15, "meanrev", "buy"), (0.3, "breakout", "sell"), (0.45, "meanrev", "close"), (0.6, "breakout", "buy"),
            (0.75, "meanrev", "sell"), (0.85, "breakout", "close")]
    signals = []
    for n, (where, strategy, action) in enumerate(plan):
        tick = own[int(len(own) * where)]
        mid = (tick["bid"] + tick["ask"]) / 2
        direction = {"buy": 1, "sell": -1}.get(action, 0)
        decimals = MARKET[symbol][2]
        signals.append(dict(
            id=f"{tenant}-{symbol}-{n}", tenant=tenant, broker=broker, strategy=strategy, symbol=symbol,
            time_msc=tick["time_msc"], action=action, confidence=round(0.55 + 0.05 * n, 2), price=round(mid, decimals),
            sl=round(mid * (1 - 0.0015 * direction), decimals) if direction else None,
            tp=round(mid * (1 + 0.0015 * direction), decimals) if direction else None,
            reason=f"{strategy} rule {n}"))
    return signals


async def produce(settings: Settings, ticks: list[dict[str, Any]], signals: list[dict[str, Any]] = ()) -> None:
    async with MT5Producer(settings) as producer:
        for tick in ticks:
            await producer.send_tick(**tick)
        for signal in signals:
            await producer.send_signal(**signal)


class LiveMarket(threading.Thread):
    """Produces a tick of each symbol every ``interval_s`` at the wall clock's time, until :meth:`stop`."""

    def __init__(self, settings: Settings, walk: Walk, tenant: str, broker: str, symbols: tuple[str, ...] = tuple(MARKET),
                 interval_s: float = 0.2) -> None:
        super().__init__(daemon=True, name="live-market")
        self.settings, self.walk, self.tenant, self.broker, self.symbols = settings, walk, tenant, broker, symbols
        self.interval_s = interval_s
        self.sent = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            asyncio.run(self._produce())
        except BaseException as exc:  # noqa: BLE001 - reported to the test through .error
            self.error = exc

    async def _produce(self) -> None:
        async with MT5Producer(self.settings) as producer:
            last_ms = 0
            while not self._halt.is_set():
                self.walk.step(6e-4 / math.sqrt(60 / self.interval_s))
                now_ms = max(int(time.time() * 1000), last_ms + 1)
                last_ms = now_ms
                for symbol in self.symbols:
                    await producer.send_tick(**self.walk.tick(self.tenant, self.broker, symbol, now_ms))
                await producer.flush()
                self.sent += 1
                await asyncio.sleep(self.interval_s)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)
