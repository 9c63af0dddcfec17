"""The correlation builder's arithmetic: all pairs at once equal each pair computed on its own."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.derive.correlations import pairwise_correlations


def reference(returns: dict[str, dict[int, float]], min_samples: int) -> dict[tuple[str, str], tuple[float, int]]:
    """Each pair on its own, over its common windows, two-pass."""
    out = {}
    symbols = sorted(returns)
    for i, a in enumerate(symbols):
        for b in symbols[i + 1:]:
            common = sorted(returns[a].keys() & returns[b].keys())
            if len(common) < min_samples:
                continue
            x = np.array([returns[a][t] for t in common])
            y = np.array([returns[b][t] for t in common])
            x, y = x - x.mean(), y - y.mean()
            if not (x * x).sum() or not (y * y).sum():
                continue
            out[a, b] = (float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum())), len(common))
    return out


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), symbols=st.integers(2, 12), windows=st.integers(1, 40),
       gap_share=st.floats(0, 0.6), min_samples=st.integers(2, 12))
def test_all_pairs_at_once_equal_each_pair_alone(seed: int, symbols: int, windows: int, gap_share: float,
                                                min_samples: int) -> None:
    rng = np.random.default_rng(seed)
    common = rng.normal(0, 1e-4, windows)
    returns: dict[str, dict[int, float]] = {}
    for s in range(symbols):
        own = rng.normal(0, 1e-4, windows) + rng.uniform(-1, 1) * common
        if s == 0:
            own = np.zeros(windows)  # a symbol that does not move
        returns[f"S{s}"] = {t * 60_000: float(r) for t, r in enumerate(own) if rng.random() >= gap_share}
    got = {(a, b): (w, n) for a, b, w, n in pairwise_correlations(returns, min_samples)}
    want = reference(returns, min_samples)
    assert got.keys() == want.keys()
    for pair, (weight, samples) in want.items():
        assert got[pair][1] == samples
        assert abs(got[pair][0] - weight) < 1e-9, pair


def test_a_pair_that_moves_together_is_one_and_opposite_is_minus_one() -> None:
    base = {t: r for t, r in enumerate([0.001, -0.002, 0.0005, 0.003, -0.001])}
    returns = {"A": base, "B": {t: 2 * r for t, r in base.items()}, "C": {t: -r for t, r in base.items()}}
    got = {(a, b): w for a, b, w, _ in pairwise_correlations(returns, 3)}
    assert got == pytest.approx({("A", "B"): 1.0, ("A", "C"): -1.0, ("B", "C"): -1.0}, abs=1e-12)
