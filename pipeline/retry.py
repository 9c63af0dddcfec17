"""Retrying a write to a store until it succeeds, with capped exponential backoff.

Contract: ``retry_until_done`` returns only after ``operation`` succeeded, or
raises :class:`Stopping` if ``stop`` was set while waiting. It logs one line
when the target becomes unavailable and one when it recovers, never one per
attempt. Data is never dropped here: the caller keeps what it was writing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, TypeVar

T = TypeVar("T")
log = logging.getLogger("tickwire.retry")


class Stopping(Exception):
    """The worker is shutting down; the pending write was abandoned (it was not committed)."""


async def retry_until_done(
    operation: Callable[[], Awaitable[T]],
    *,
    target: str,
    stop: asyncio.Event,
    max_backoff_s: float,
    first_backoff_s: float = 0.05,
) -> T:
    backoff = first_backoff_s
    failed_at: float | None = None
    attempts = 0
    while True:
        try:
            result = await operation()
        except Exception as exc:  # noqa: BLE001 - any failure of the store is retried
            attempts += 1
            if failed_at is None:
                failed_at = time.monotonic()
                log.warning("%s unavailable, pausing and retrying with backoff: %s: %s", target, type(exc).__name__, exc)
            if stop.is_set():
                raise Stopping(target) from exc
            try:
                await asyncio.wait_for(stop.wait(), timeout=backoff)
            except asyncio.TimeoutError:
                pass
            backoff = min(backoff * 2, max_backoff_s)
            continue
        if failed_at is not None:
            log.warning("%s recovered after %d failed attempts in %.1f s", target, attempts, time.monotonic() - failed_at)
        return result
