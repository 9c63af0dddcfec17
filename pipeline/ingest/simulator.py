"""An MT5-like market: deterministic ticks and signals, and a paced run that produces them.

:class:`Market` is the generator. For every (tenant, broker, symbol) of a
:class:`SimulationConfig` it keeps a mean-reverting random walk of the mid price
whose scale, volatility, spread and digits come from :data:`SYMBOLS` (a symbol
not in the table gets :data:`DEFAULT_SPEC`). Within a tenant, the symbols of a
factor group (``usd``, ``metals``, ``equities``, ``crypto``) share a common
factor, so their moves are correlated (EURUSD and USDCHF negatively). Quotes are
rounded to the symbol's digits, ``bid < ask`` always, and the flags say which
side changed, as MT5 does; exchange-like symbols also report deals
(``LAST|VOLUME`` with ``BUY`` or ``SELL``).

Determinism: the same config (seed included) gives the same sequence of keys,
quotes, flags and volumes, and the same sequence of signal ids, strategies and
actions; ticks and signals draw from separate random streams, so how they
interleave in time does not change either sequence. Times come from the clock
the caller passes; per key they are strictly increasing (a key's tick that
would not be later than its previous one gets the previous time + 1 ms).

:func:`run_simulation` produces to a broker at ``rate`` ticks/s in the wall
clock's time; :func:`generate_ticks` makes ticks without a broker.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.contracts import schemas
from pipeline.contracts.schemas import (
    TICK_FLAG_ASK,
    TICK_FLAG_BID,
    TICK_FLAG_BUY,
    TICK_FLAG_LAST,
    TICK_FLAG_SELL,
    TICK_FLAG_VOLUME,
)
from pipeline.ingest.producer import MT5Producer

#: Mean reversion of the log price per step, so prices stay near their table
#: scale however long a run is (stationary deviation ~ 224 steps' volatility).
MEAN_REVERSION = 1e-5
#: Share of an exchange-like symbol's ticks that report a deal.
DEAL_SHARE = 0.3
#: Ticks for one key beyond this many per second run ahead of the wall clock
#: (times are whole milliseconds and strictly increasing per key).
MAX_TICKS_PER_KEY_PER_S = 1000.0

SLICE_S = 0.015
PROGRESS_INTERVAL_S = 0.25


@dataclass(frozen=True)
class SymbolSpec:
    """How one symbol trades.

    ``tick_vol`` is the standard deviation of one tick's log-price move;
    ``loading`` (-1..1) is the correlation of the symbol's moves with its
    ``factor``; ``exchange`` symbols report deals with LAST and VOLUME.
    """

    price: float
    digits: int
    spread: float
    tick_vol: float
    factor: str
    loading: float
    exchange: bool = False


SYMBOLS: dict[str, SymbolSpec] = {
    "EURUSD": SymbolSpec(1.0850, 5, 0.00008, 2.5e-5, "usd", -0.8),
    "GBPUSD": SymbolSpec(1.2700, 5, 0.00012, 3.0e-5, "usd", -0.7),
    "AUDUSD": SymbolSpec(0.6600, 5, 0.00010, 3.0e-5, "usd", -0.6),
    "USDCHF": SymbolSpec(0.8800, 5, 0.00012, 2.5e-5, "usd", 0.75),
    "USDJPY": SymbolSpec(150.00, 3, 0.010, 3.0e-5, "usd", 0.6),
    "XAUUSD": SymbolSpec(2650.0, 2, 0.25, 4.0e-5, "metals", 0.8),
    "XAGUSD": SymbolSpec(31.00, 3, 0.025, 6.0e-5, "metals", 0.8),
    "US30": SymbolSpec(44000.0, 1, 2.0, 4.0e-5, "equities", 0.8),
    "NAS100": SymbolSpec(21000.0, 1, 1.5, 5.0e-5, "equities", 0.85),
    "GER40": SymbolSpec(20000.0, 1, 1.2, 4.0e-5, "equities", 0.6),
    "AAPL": SymbolSpec(230.00, 2, 0.02, 5.0e-5, "equities", 0.6, exchange=True),
    "TSLA": SymbolSpec(350.00, 2, 0.05, 9.0e-5, "equities", 0.5, exchange=True),
    "BTCUSD": SymbolSpec(95000.0, 2, 15.0, 8.0e-5, "crypto", 0.9),
    "ETHUSD": SymbolSpec(3400.0, 2, 1.2, 1.0e-4, "crypto", 0.85),
}
#: A symbol not in :data:`SYMBOLS`: a 100.00 instrument of its own.
DEFAULT_SPEC = SymbolSpec(100.00, 2, 0.02, 5.0e-5, "other", 0.0)

DEFAULT_SYMBOLS = ["EURUSD", "GBPUSD", "USDJPY", "XAUUSD", "US30", "NAS100", "BTCUSD", "AAPL"]

STRATEGIES = ("ema-cross", "rsi-reversal", "breakout", "vwap-revert")
_STRATEGY_TEXT = {
    "ema-cross": "EMA 12/26 crossover",
    "rsi-reversal": "RSI(14)",
    "breakout": "20-bar range",
    "vwap-revert": "distance to VWAP",
}
_ACTIONS = ("buy", "sell", "close", "hold")
_ACTION_WEIGHTS = (0.35, 0.35, 0.2, 0.1)
_ACTION_TEXT = {"buy": "turned bullish", "sell": "turned bearish", "close": "target reached", "hold": "unchanged"}
#: Stop-loss distance in ticks' volatility (take-profit is twice as far).
_SL_TICKS = 50.0


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate; invalid values raise ``ValueError`` naming the field.

    Keys are every (tenant, broker, symbol) combination; ``rate`` is ticks/s
    over all keys, ``signal_rate`` signals/s over all keys (0 for none).
    """

    tenants: list[str] = field(default_factory=lambda: ["acme", "globex"])
    brokers: list[str] = field(default_factory=lambda: ["demo"])
    symbols: list[str] = field(default_factory=lambda: list(DEFAULT_SYMBOLS))
    rate: float = 5000.0
    duration_s: float = 30.0
    seed: int = 7
    signal_rate: float = 2.0

    def __post_init__(self) -> None:
        _check_names("tenants", self.tenants, schemas.TENANT)
        _check_names("brokers", self.brokers, schemas.BROKER)
        _check_names("symbols", self.symbols, schemas.SYMBOL)
        _check_number("rate", self.rate, positive=True)
        _check_number("duration_s", self.duration_s, positive=True)
        _check_number("signal_rate", self.signal_rate, positive=False)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

    @property
    def keys(self) -> list[tuple[str, str, str]]:
        """Every (tenant, broker, symbol), in a fixed order."""
        return [(t, b, s) for t in self.tenants for b in self.brokers for s in self.symbols]

    @property
    def total_ticks(self) -> int:
        return round(self.rate * self.duration_s)

    @property
    def total_signals(self) -> int:
        return round(self.signal_rate * self.duration_s)

    @property
    def ticks_per_key_per_s(self) -> float:
        """Above :data:`MAX_TICKS_PER_KEY_PER_S`, tick times run ahead of the wall clock."""
        return self.rate / len(self.keys)


def _check_names(name: str, values: list[str], pattern: schemas.NamePattern) -> None:
    if not values:
        raise ValueError(f"{name}: at least one is needed")
    for value in values:
        try:
            pattern.check(name, value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: {value!r} does not match the schema's pattern {pattern.regex!r}") from None
    if len(set(values)) != len(values):
        raise ValueError(f"{name}: duplicates in {values}")


def _check_number(name: str, value: float, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def spec_of(symbol: str) -> SymbolSpec:
    """The trading spec of ``symbol`` (:data:`DEFAULT_SPEC` when not in the table)."""
    return SYMBOLS.get(symbol, DEFAULT_SPEC)


class _Factor:
    """A tenant's common factor: a mean-reverting walk stepped on every member's tick."""

    __slots__ = ("value", "step_sd", "decay")

    def __init__(self, members: int) -> None:
        self.value = 0.0
        self.step_sd = 1.0 / math.sqrt(members)  # per round of member ticks: unit variance
        self.decay = 1.0 - MEAN_REVERSION / members


class _Quote:
    """One key's state: its walk, its last quote and its last time."""

    __slots__ = ("tenant", "broker", "symbol", "spec", "factor", "w_factor", "w_own", "own", "point",
                 "half_spread", "mid", "bid", "ask", "last_ms")

    def __init__(self, key: tuple[str, str, str], factor: _Factor) -> None:
        self.tenant, self.broker, self.symbol = key
        self.spec = spec = spec_of(self.symbol)
        self.factor = factor
        self.w_factor = spec.tick_vol * spec.loading
        self.w_own = spec.tick_vol * math.sqrt(1.0 - spec.loading**2)
        self.own = 0.0
        self.point = 10.0**-spec.digits
        self.half_spread = spec.spread / 2
        self.mid = spec.price
        self.bid = self.ask = 0.0  # nothing quoted yet: the first tick has both flags
        self.last_ms = -1


class Market:
    """The simulated market of a config (see the module docstring for its contract).

    ``start_ms`` makes signal ids unique per run: ``{strategy}-{start_ms}-{seq}``.
    """

    def __init__(self, config: SimulationConfig, start_ms: int) -> None:
        self._start_ms = start_ms
        self._tick_rng = random.Random(f"{config.seed}/ticks")
        self._signal_rng = random.Random(f"{config.seed}/signals")
        self._signal_seq = 0
        self._quotes = _make_quotes(config.keys)

    def tick(self, now_ms: int) -> dict[str, Any]:
        """The next tick, as ``MT5Producer.send_tick`` fields, at ``now_ms`` (or just after its key's last)."""
        rng = self._tick_rng
        q = self._quotes[int(rng.random() * len(self._quotes))]
        factor = q.factor
        factor.value = factor.value * factor.decay + rng.gauss(0.0, factor.step_sd)
        q.own = q.own * (1.0 - MEAN_REVERSION) + rng.gauss(0.0, 1.0)
        spec = q.spec
        mid = spec.price * math.exp(q.w_factor * factor.value + q.w_own * q.own)
        half = q.half_spread * (0.8 + 0.4 * rng.random())
        bid, ask = round(mid - half, spec.digits), round(mid + half, spec.digits)
        if ask <= bid:
            ask = round(bid + q.point, spec.digits)
        last, volume, flags = 0.0, 0, 0
        if spec.exchange and rng.random() < DEAL_SHARE:
            buy = rng.random() < 0.5
            last, volume = (ask if buy else bid), int(rng.expovariate(0.02)) + 1
            flags = TICK_FLAG_LAST | TICK_FLAG_VOLUME | (TICK_FLAG_BUY if buy else TICK_FLAG_SELL)
        elif bid == q.bid and ask == q.ask:  # MT5 sends no tick without a change: widen by a point
            if mid >= q.mid:
                ask = round(ask + q.point, spec.digits)
            else:
                bid = round(bid - q.point, spec.digits)
        flags |= (TICK_FLAG_BID if bid != q.bid else 0) | (TICK_FLAG_ASK if ask != q.ask else 0)
        q.mid, q.bid, q.ask = mid, bid, ask
        q.last_ms = now_ms if now_ms > q.last_ms else q.last_ms + 1
        return {"tenant": q.tenant, "broker": q.broker, "symbol": q.symbol, "time_msc": q.last_ms,
                "bid": bid, "ask": ask, "last": last, "volume": volume, "volume_real": float(volume),
                "flags": flags}

    def signal(self, now_ms: int) -> dict[str, Any]:
        """The next signal, as ``MT5Producer.send_signal`` fields, priced at its key's current mid."""
        rng = self._signal_rng
        q = self._quotes[int(rng.random() * len(self._quotes))]
        strategy = STRATEGIES[int(rng.random() * len(STRATEGIES))]
        action = rng.choices(_ACTIONS, _ACTION_WEIGHTS)[0]
        confidence = round(rng.random(), 3)
        self._signal_seq += 1
        digits = q.spec.digits
        price = round(q.mid, digits)
        sl = tp = None
        if action in ("buy", "sell"):
            distance = q.mid * q.spec.tick_vol * _SL_TICKS * (1 if action == "buy" else -1)
            sl, tp = round(q.mid - distance, digits), round(q.mid + 2 * distance, digits)
        return {"id": f"{strategy}-{self._start_ms}-{self._signal_seq}", "tenant": q.tenant, "broker": q.broker,
                "strategy": strategy, "symbol": q.symbol, "time_msc": now_ms, "action": action,
                "confidence": confidence, "price": price, "sl": sl, "tp": tp,
                "reason": f"{_STRATEGY_TEXT[strategy]} {_ACTION_TEXT[action]}"}


def _make_quotes(keys: list[tuple[str, str, str]]) -> list[_Quote]:
    members: dict[tuple[str, str], int] = {}
    for tenant, _, symbol in keys:
        group = (tenant, spec_of(symbol).factor)
        members[group] = members.get(group, 0) + 1
    factors = {group: _Factor(count) for group, count in members.items()}
    return [_Quote(key, factors[(key[0], spec_of(key[2]).factor)]) for key in keys]


def due(elapsed_s: float, rate: float, total: int) -> int:
    """How many of ``total`` events at ``rate``/s are due ``elapsed_s`` after the start."""
    if elapsed_s <= 0:
        return 0
    return min(total, int(elapsed_s * rate))


def generate_ticks(config: SimulationConfig, n: int, start_ms: int) -> list[dict[str, Any]]:
    """``n`` ticks of a fresh market, the i-th timed ``start_ms + i * 1000 / rate`` (as paced live)."""
    market = Market(config, start_ms)
    step = 1000.0 / config.rate
    return [market.tick(start_ms + int(i * step)) for i in range(n)]


@dataclass(frozen=True)
class SimulationProgress:
    """Where a running simulation is; ``target_ticks`` is what it produces in all."""

    elapsed_s: float
    ticks: int
    signals: int
    target_ticks: int

    @property
    def rate(self) -> float:
        """Achieved ticks/s so far."""
        return self.ticks / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True)
class SimulationReport:
    """What a finished simulation produced; ``seconds`` includes the final flush."""

    ticks: int
    signals: int
    seconds: float

    @property
    def rate(self) -> float:
        """Achieved ticks/s."""
        return self.ticks / self.seconds if self.seconds > 0 else 0.0


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


async def run_simulation(
    producer: MT5Producer,
    config: SimulationConfig,
    on_progress: Callable[[SimulationProgress], None] | None = None,
) -> SimulationReport:
    """Produce ``config.total_ticks`` ticks and ``config.total_signals`` signals, paced over ``duration_s``.

    Every ``SLICE_S`` it sends the ticks and signals due so far, timed with the
    wall clock (so they are live). When the producer cannot keep up it sends at
    most a tenth of a second's worth between progress checks, so the run takes
    longer but never drops anything. ``on_progress`` is called a few times per
    second and once at the end; the producer is flushed before returning.
    """
    market = Market(config, _wall_ms())
    total_ticks, total_signals = config.total_ticks, config.total_signals
    max_batch = max(1, int(config.rate * 0.1))
    ticks = signals = 0
    started = time.monotonic()
    next_progress = started + PROGRESS_INTERVAL_S
    while ticks < total_ticks or signals < total_signals:
        slice_start = time.monotonic()
        elapsed = slice_start - started
        now_ms = _wall_ms()
        for _ in range(min(due(elapsed, config.rate, total_ticks) - ticks, max_batch)):
            await producer.send_tick(**market.tick(now_ms))
            ticks += 1
        for _ in range(due(elapsed, config.signal_rate, total_signals) - signals):
            await producer.send_signal(**market.signal(now_ms))
            signals += 1
        if on_progress is not None and slice_start >= next_progress:
            on_progress(SimulationProgress(elapsed, ticks, signals, total_ticks))
            next_progress = slice_start + PROGRESS_INTERVAL_S
        await asyncio.sleep(max(0.0, SLICE_S - (time.monotonic() - slice_start)))
    await producer.flush()
    seconds = time.monotonic() - started
    if on_progress is not None:
        on_progress(SimulationProgress(seconds, ticks, signals, total_ticks))
    return SimulationReport(ticks, signals, seconds)
