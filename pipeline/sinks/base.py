"""The sink contract.

A sink buffers what a stage's agents add and writes it in :meth:`Sink.flush`.
Every write a sink makes must be idempotent (a record written twice is seen
once), because the pipeline is at-least-once: a crash between flush and commit
redelivers records that were already written. The stage's checkpoint calls
``flush`` before it commits offsets; ``flush`` raises if the store did not
durably accept everything, and keeps its buffer so that a retry writes it again.

When the store refuses the *data* (a permanent error, see
:mod:`pipeline.core.errors`), the checkpoint calls :meth:`Sink.flush_isolating`
instead: it writes everything the store accepts, finds the refused items by
splitting (:func:`pipeline.core.isolation.isolate`) and returns them as
:class:`~pipeline.core.isolation.Refusal` s, each with the input record it came
from (which the checkpoint dead-letters). A transient error during it still
raises, with the buffer kept.

:class:`ItemSink` implements both from three hooks: what is buffered (a
sequence that slices), how to write a slice of it, and which record an item came from.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Generic, Sequence, TypeVar

from pipeline.core.codec import RawRecord
from pipeline.core.isolation import Refusal, isolate, refusals

Item = TypeVar("Item")


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

    @abstractmethod
    async def flush_isolating(self) -> list[Refusal]:
        """Write what the store accepts, clear the buffer, and return what it refused (see the module docstring)."""

    async def close(self) -> None:
        """Release connections. Called once at shutdown, after the last flush."""


class ItemSink(Sink, Generic[Item]):
    """A sink whose buffer is a sequence of items written in slices (see the module docstring)."""

    @abstractmethod
    def _items(self) -> Sequence[Item]:
        """What is buffered now, in order; slicing it must give the items of a range."""

    @abstractmethod
    async def _write(self, items: Sequence[Item]) -> None:
        """Durably write ``items`` (a slice of :meth:`_items`); raise if the store did not accept all of them."""

    @abstractmethod
    def _origin(self, item: Item) -> RawRecord | None:
        """The input record ``item`` came from (dead-lettered if the store refuses the item)."""

    @abstractmethod
    def _clear(self) -> None:
        """Forget what :meth:`_items` returned (after it was written or refused)."""

    async def _prepare(self) -> None:
        """Work a flush needs before :meth:`_items` (e.g. a read that adds items); idempotent."""

    async def flush(self) -> None:
        await self._prepare()
        items = self._items()
        if len(items):
            await self._write(items)
        self._clear()

    async def flush_isolating(self) -> list[Refusal]:
        await self._prepare()
        items = self._items()
        refused = await isolate(len(items), lambda lo, hi: self._write(items[lo:hi]))
        found = refusals(self.name, refused, lambda index: self._origin(items[index]))
        self._clear()
        return found
