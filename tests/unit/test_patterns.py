"""Pattern embeddings computed many windows at once, and how pattern writes reach the vector store (in chunks,
patterns before forward returns)."""

from __future__ import annotations

import asyncio
from typing import Sequence

import numpy as np
import pytest

from pipeline.contracts.timeframes import Timeframe
from pipeline.derive.embedding import WINDOW_BARS, embed, embed_windows
from pipeline.derive.patterns import WRITE_CHUNK, WRITE_CONCURRENCY, PatternBuilder
from pipeline.stores.vectors.base import Pattern, PatternKey


def series(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    closes = 1.1 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    closes[40:90] = closes[40]  # a flat stretch: windows inside it have no shape
    highs = closes * (1 + abs(rng.normal(0, 3e-4, n)))
    lows = closes * (1 - abs(rng.normal(0, 3e-4, n)))
    spreads = abs(rng.normal(0, 2e-5, n))
    return closes, highs, lows, spreads


def test_many_windows_at_once_give_each_windows_own_embedding_bit_for_bit() -> None:
    closes, highs, lows, spreads = series(300, 5)
    ends = [WINDOW_BARS, 60, 89, 90, 150, 299, 122]
    batch = embed_windows(closes, highs, lows, spreads, ends)
    alone = [embed(closes[:i + 1].tolist(), highs[:i + 1].tolist(), lows[:i + 1].tolist(), spreads[:i + 1].tolist())
             for i in ends]
    assert batch == alone
    assert batch[2] is None and batch[0] is not None  # the window ending at 89 is flat
    assert embed_windows(closes, highs, lows, spreads, []) == []


class RecordingVectors:
    """Records each write (kind, size); ``fail_on``: the write (1-based) that raises."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.writes: list[tuple[str, int]] = []
        self.running = self.most_running = 0
        self._fail_on = fail_on

    async def _record(self, kind: str, size: int) -> None:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        await asyncio.sleep(0.001)
        self.running -= 1
        self.writes.append((kind, size))
        if len(self.writes) == self._fail_on:
            raise ConnectionError("store went away")

    async def upsert(self, patterns: Sequence[Pattern]) -> None:
        await self._record("patterns", len(patterns))

    async def set_forward_returns(self, updates: Sequence[tuple[PatternKey, float]]) -> None:
        await self._record("forward", len(updates))


def derived(n: int) -> list[tuple[PatternKey, Pattern | None, float | None]]:
    keys = [PatternKey("acme", "demo", "EURUSD", "1m", 60_000 * i) for i in range(n)]
    return [(k, Pattern(k, (1.0,) * 36, 1.0, 0.1), None) for k in keys] + [(k, None, 0.01) for k in keys]


def builder(vectors: RecordingVectors) -> PatternBuilder:
    return PatternBuilder(None, vectors, [Timeframe.parse("1m")], 5)  # type: ignore[arg-type]  # writes only


def test_writes_go_in_chunks_every_pattern_before_any_forward_return() -> None:
    vectors = RecordingVectors()
    n = 2 * WRITE_CHUNK + 17
    asyncio.run(builder(vectors)._write(derived(n)))
    kinds = [kind for kind, _ in vectors.writes]
    assert kinds == ["patterns"] * 3 + ["forward"] * 3
    assert sorted(size for kind, size in vectors.writes if kind == "patterns") == [17, WRITE_CHUNK, WRITE_CHUNK]
    assert sum(size for kind, size in vectors.writes if kind == "forward") == n
    assert vectors.most_running == WRITE_CONCURRENCY


def test_a_failed_chunk_fails_the_write_after_the_chunks_under_way() -> None:
    vectors = RecordingVectors(fail_on=1)
    with pytest.raises(ConnectionError):
        asyncio.run(builder(vectors)._write(derived(3 * WRITE_CHUNK)))
    assert [kind for kind, _ in vectors.writes] == ["patterns"] * WRITE_CONCURRENCY  # nothing after the failure
    assert vectors.running == 0
