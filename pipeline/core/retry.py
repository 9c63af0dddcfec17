"""Retrying a write to a store until it succeeds, with capped exponential backoff.

Contract: ``retry_until_done`` returns only after ``operation`` succeeded, or
raises :class:`Stopping` if ``stop`` was set while it was failing. Failures
and recovery are reported to the sink's :class:`CircuitBreaker` (one log line
per state change, never one per attempt) and to ``on_state`` (the source
pauses consumption while a circuit is open). Data is never dropped here: the
caller keeps what it was writing.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, TypeVar

from pipeline.core.circuit import CircuitBreaker

T = TypeVar("T")


class Stopping(Exception):
    """The worker is shutting down; the pending write was abandoned (it was not committed)."""


async def retry_until_done(
    operation: Callable[[], Awaitable[T]],
    *,
    circuit: CircuitBreaker,
    stop: asyncio.Event,
    max_backoff_s: float,
    on_state: Callable[[CircuitBreaker], None] | None = None,
    first_backoff_s: float = 0.05,
) -> T:
    backoff = first_backoff_s
    while True:
        try:
            result = await operation()
        except Exception as exc:  # noqa: BLE001 - any failure of the store is retried
            if circuit.failed(exc) and on_state is not None:
                on_state(circuit)
            if stop.is_set():
                raise Stopping(circuit.name) from exc
            try:
                await asyncio.wait_for(stop.wait(), timeout=backoff)
            except asyncio.TimeoutError:
                pass
            backoff = min(backoff * 2, max_backoff_s)
            continue
        if circuit.succeeded() and on_state is not None:
            on_state(circuit)
        return result
