"""The benchmark's market data: MT5-like ticks and signals as encoded Kafka records.

3 tenants × 50 symbols at one broker (150 keys). Per key, the mid price is a
random walk at the symbol's price scale (the simulator's table; unknown
symbols trade near 100), quotes are rounded to the symbol's digits, and times
are strictly increasing. Tick ``i`` of ``n`` is timed ``start_ms + i * span_ms / n``
(then nudged per key to stay strictly increasing), so ``span_ms`` decides how
many bars close: all ticks within one minute close none, hours of event time
close bars on every timeframe. Values are ``tick.v1`` JSON of about 180 bytes.

Generation is vectorised (numpy) and deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson

from pipeline.ingest.producer import encode_signal
from pipeline.ingest.simulator import STRATEGIES, SYMBOLS, spec_of

TENANTS = ("bench-tenant-a", "bench-tenant-b", "bench-tenant-c")
BROKER = "bench-broker-01"
SYMBOL_COUNT = 50
#: The simulator's real symbols first, then made-up ones (they get its default spec).
SYMBOL_NAMES = tuple(list(SYMBOLS)[:SYMBOL_COUNT] + [f"BENCH{i:02d}" for i in range(len(SYMBOLS), SYMBOL_COUNT)])
HOUR_MS = 3_600_000
#: Event time of the benchmark's data: 2025-11-23 12:00 UTC (an hour boundary).
EPOCH_MS = 1_763_899_200_000

Record = tuple[bytes, bytes]


@dataclass(frozen=True)
class Series:
    tenant: str
    broker: str
    symbol: str

    @property
    def key(self) -> bytes:
        return f"{self.tenant}:{self.broker}:{self.symbol}".encode()


def universe(tenants: tuple[str, ...] = TENANTS, symbols: tuple[str, ...] = SYMBOL_NAMES) -> list[Series]:
    """Every (tenant, broker, symbol) of the benchmark, in a fixed order."""
    return [Series(t, BROKER, s) for t in tenants for s in symbols]


def tick_records(n: int, *, start_ms: int = EPOCH_MS, span_ms: int = HOUR_MS, seed: int = 7,
                 series: list[Series] | None = None) -> list[Record]:
    """``n`` tick records (key, ``tick.v1`` JSON) spread over ``[start_ms, start_ms + span_ms)``, keys at random."""
    keys = series or universe()
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(keys), n)
    times = start_ms + (np.arange(n, dtype=np.int64) * span_ms) // max(n, 1)
    bids = np.empty(n)
    asks = np.empty(n)
    for k, s in enumerate(keys):
        idx = np.flatnonzero(which == k)
        if not len(idx):
            continue
        spec = spec_of(s.symbol)
        steps = rng.normal(0.0, spec.tick_vol, len(idx))
        mid = spec.price * np.exp(np.cumsum(steps))
        half = spec.spread / 2 * (0.8 + 0.4 * rng.random(len(idx)))
        bid = np.round(mid - half, spec.digits)
        ask = np.round(mid + half, spec.digits)
        point = 10.0 ** -spec.digits
        ask = np.where(ask <= bid, np.round(bid + point, spec.digits), ask)
        bids[idx], asks[idx] = bid, ask
        j = np.arange(len(idx))
        times[idx] = np.maximum.accumulate(times[idx] - j) + j  # strictly increasing per key
    key_bytes = [s.key for s in keys]
    tenants = [s.tenant for s in keys]
    symbols = [s.symbol for s in keys]
    dumps = orjson.dumps
    out: list[Record] = []
    append = out.append
    for k, t, bid, ask in zip(which.tolist(), times.tolist(), bids.tolist(), asks.tolist()):
        append((key_bytes[k], dumps({
            "v": 1, "tenant": tenants[k], "broker": BROKER, "symbol": symbols[k], "time_msc": t,
            "bid": bid, "ask": ask, "last": 0.0, "volume": 0, "volume_real": 0.0, "flags": 6,
        })))
    return out


def signal_records(n: int, *, start_ms: int = EPOCH_MS, span_ms: int = HOUR_MS, seed: int = 11,
                   series: list[Series] | None = None) -> list[Record]:
    """``n`` ``signal.v1`` records of the same keys, evenly spread over the span, with unique ids."""
    keys = series or universe()
    rng = np.random.default_rng(seed)
    out = []
    actions = ("buy", "sell", "close", "hold")
    for i in range(n):
        s = keys[int(rng.integers(0, len(keys)))]
        strategy = STRATEGIES[int(rng.integers(0, len(STRATEGIES)))]
        spec = spec_of(s.symbol)
        value = encode_signal(
            id=f"{strategy}-{seed}-{i}", tenant=s.tenant, broker=s.broker, strategy=strategy, symbol=s.symbol,
            time_msc=start_ms + i * span_ms // max(n, 1), action=actions[int(rng.integers(0, 4))],
            confidence=round(float(rng.random()), 3), price=round(spec.price, spec.digits),
        )
        out.append((s.key, value))
    return out
