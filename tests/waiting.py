"""Waiting on a condition with a deadline (never a bare sleep)."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(probe: Callable[[], T], *, timeout_s: float, what: str, interval_s: float = 0.2) -> T:
    """Return the first truthy ``probe()``; fail the test with ``what`` and the last value at the deadline."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; last value: {last!r}")
