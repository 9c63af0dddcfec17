"""The sink contract.

A sink buffers what agents :meth:`Sink.add` and writes it in :meth:`Sink.flush`.
Every write a sink makes must be idempotent (a record written twice is seen
once), because the pipeline is at-least-once: a crash between flush and commit
redelivers records that were already written. The checkpoint calls ``flush``
before it commits offsets; ``flush`` raises if the store did not durably accept
everything, and it must keep its buffer so that a retry writes it again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class Sink(ABC):
    #: Flushed after every fetched batch (hot data whose latency matters),
    #: not only at checkpoints.
    eager: bool = False

    @property
    @abstractmethod
    def name(self) -> str:
        """Short name used in logs and metrics."""

    @property
    @abstractmethod
    def pending(self) -> int:
        """How many items are buffered and not yet flushed."""

    @abstractmethod
    async def flush(self) -> None:
        """Durably write everything buffered, then clear the buffer. Idempotent."""

    async def close(self) -> None:
        """Release connections. Called once at shutdown, after the last flush."""
