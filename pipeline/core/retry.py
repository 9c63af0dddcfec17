"""Flushing a sink until its data is written or refused, with capped, jittered backoff.

Contract of :func:`flush_until_settled`: it returns only when every item the
sink held was durably written or refused by the store (the refused ones are
returned, to be dead-lettered), or raises :class:`Stopping` if ``stop`` was
set while the store was unavailable. What happens on an error depends on its
kind (:func:`pipeline.core.errors.classify`):

- transient: the sink's circuit opens (one log line; ``on_state`` lets the
  stage pause consumption) and the flush is retried after a backoff that
  doubles up to ``max_backoff_s``, each wait drawn at random between half and
  all of it (jitter: many workers do not retry in step);
- permanent: the flush is repeated at once in isolating mode
  (:meth:`~pipeline.sinks.base.Sink.flush_isolating`): what the store accepts
  is written, what it refuses is returned;
- unknown: retried like a transient error ``unknown_attempts`` times, then
  handled as permanent.

Data is never dropped here: a sink keeps its buffer until a flush succeeds.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Callable, Protocol

from pipeline.core.circuit import CircuitBreaker
from pipeline.core.errors import classify
from pipeline.core.isolation import Refusal


class Flushable(Protocol):
    """What :func:`flush_until_settled` needs of a sink (see :class:`pipeline.sinks.base.Sink`)."""

    async def flush(self) -> None: ...

    async def flush_isolating(self) -> list[Refusal]: ...


class Stopping(Exception):
    """The worker is shutting down; the pending write was abandoned (it was not committed)."""


@dataclass(frozen=True)
class RetryPolicy:
    max_backoff_s: float
    unknown_attempts: int = 5
    first_backoff_s: float = 0.05

    def wait_s(self, attempt: int, rng: random.Random = random._inst) -> float:
        """The wait before retry number ``attempt`` (0-based): capped exponential, jittered."""
        ceiling = min(self.first_backoff_s * (2 ** min(attempt, 30)), self.max_backoff_s)
        return rng.uniform(ceiling / 2, ceiling)


async def flush_until_settled(sink: Flushable, *, circuit: CircuitBreaker, stop: asyncio.Event, policy: RetryPolicy,
                              on_state: Callable[[CircuitBreaker], None] | None = None) -> list[Refusal]:
    """Flush ``sink`` (see the module docstring); returns what the store refused."""
    isolating = False
    unknown = 0
    attempt = 0
    while True:
        try:
            if isolating:
                refused = await sink.flush_isolating()
            else:
                await sink.flush()
                refused = []
        except Exception as exc:  # noqa: BLE001 - every store failure is classified below
            kind = classify(exc)
            if kind == "permanent" and not isolating:
                isolating = True
                continue
            if kind == "unknown" and not isolating:
                unknown += 1
                if unknown >= policy.unknown_attempts:
                    isolating = True
                    continue
            if circuit.failed(exc) and on_state is not None:
                on_state(circuit)
            if stop.is_set():
                raise Stopping(circuit.name) from exc
            try:
                await asyncio.wait_for(stop.wait(), timeout=policy.wait_s(attempt))
            except asyncio.TimeoutError:
                pass
            attempt += 1
            continue
        if circuit.succeeded() and on_state is not None:
            on_state(circuit)
        return refused or []
