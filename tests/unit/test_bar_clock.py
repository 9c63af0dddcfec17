"""The bar clock: which bars close, which are amended, which late ticks are dropped, per series and timeframe."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contracts.timeframes import Timeframe
from pipeline.derive.bar_clock import BarClock, BarWindow, ClockEvents

MINUTE = 60_000
S = ("acme", "demo", "EURUSD")
T0 = 1_763_899_200_000  # a minute boundary


def observe(clock: BarClock, *times: int, series=S) -> ClockEvents:
    events = ClockEvents()
    for t in times:
        clock.observe(series, t, events)
    return events


def test_the_first_tick_of_a_series_opens_a_bar_and_is_first_seen() -> None:
    events = observe(BarClock([Timeframe.parse("1m")], 5_000), T0 + 10)
    assert events.closed == [] and events.first_seen == {S: T0 + 10}


def test_a_tick_of_a_later_window_closes_the_open_bar_once() -> None:
    clock = BarClock([Timeframe.parse("1m"), Timeframe.parse("5m")], 5_000)
    observe(clock, T0 + 10, T0 + 59_999)
    events = observe(clock, T0 + MINUTE, T0 + MINUTE + 5)
    assert events.closed == [BarWindow(*S, "1m", T0)]
    events = observe(clock, T0 + 5 * MINUTE)
    assert events.closed == [BarWindow(*S, "1m", T0 + MINUTE), BarWindow(*S, "5m", T0)]


def test_a_late_tick_within_lateness_amends_its_bar_and_beyond_it_is_dropped() -> None:
    clock = BarClock([Timeframe.parse("1m")], 5_000)
    observe(clock, T0 + 59_000, T0 + MINUTE + 2_000)
    amended = observe(clock, T0 + 58_000)  # 4 s behind the watermark
    assert amended.amended == [BarWindow(*S, "1m", T0)] and amended.late == {("1m", "amended"): 1}
    dropped = observe(clock, T0 + 1_000)  # 61 s behind
    assert dropped.amended == [] and dropped.late == {("1m", "dropped"): 1}


def test_series_are_independent() -> None:
    clock = BarClock([Timeframe.parse("1m")], 0)
    other = ("acme", "demo", "GBPUSD")
    observe(clock, T0 + 5 * MINUTE)
    events = observe(clock, T0 + 10, series=other)
    assert events.closed == [] and events.first_seen == {other: T0 + 10}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 10 * MINUTE), min_size=1, max_size=30), min_size=1, max_size=8),
       st.integers(0, 20_000))
def test_observing_a_batch_at_once_equals_observing_tick_by_tick(batches: list[list[int]], lateness: int) -> None:
    """The per-batch fast path (one comparison per timeframe when the batch stays in the open bars) gives exactly
    the events of the per-tick walk."""
    timeframes = [Timeframe.parse("1m"), Timeframe.parse("5m")]
    fast, slow = BarClock(timeframes, lateness), BarClock(timeframes, lateness)
    for batch in batches:
        times = [T0 + t for t in batch]
        a, b = ClockEvents(), ClockEvents()
        fast.observe_series(S, times, a)
        for t in times:
            slow.observe(S, t, b)
        assert (a.closed, a.amended, dict(a.late), a.first_seen) == (b.closed, b.amended, dict(b.late), b.first_seen)
