"""A batch of consumed records of one topic-partition, as it travels to agents.

The source decodes each fetched batch once (rejects go to the DLQ there) and
hands it to every agent that reads its topic as ONE event, so Faust's
per-event cost is paid once per batch. The source then waits on
:attr:`RecordBatch.done`, which resolves when every one of those agents has
handed the batch to its sinks (or fails with the first agent's error).
Offsets are committed later, by the checkpoint.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator, Generic, TypeVar

import msgspec

from pipeline.core.codec import RawRecord

T = TypeVar("T", bound=msgspec.Struct)


class Handoff:
    """Something handed to one or more agents; :attr:`done` resolves when all have processed it."""

    def __init__(self) -> None:
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting = 0

    def expect(self, consumers: int) -> None:
        """Declare how many agents will process this batch before it is sent to them."""
        self._waiting = consumers
        if consumers == 0 and not self.done.done():
            self.done.set_result(None)

    @asynccontextmanager
    async def processing(self) -> AsyncIterator[Handoff]:
        """One agent's processing of the batch; resolves :attr:`done` after the last agent."""
        try:
            yield self
        except Exception as exc:
            if not self.done.done():
                self.done.set_exception(exc)
            return  # the source re-raises it; the agent stays alive
        self._waiting -= 1
        if self._waiting <= 0 and not self.done.done():
            self.done.set_result(None)


@dataclass(eq=False)
class RecordBatch(Handoff, Generic[T]):
    """Decoded records of one topic-partition from one fetch."""

    topic: str
    partition: int
    #: the valid records of the batch with their decoded messages, in offset order
    messages: list[tuple[RawRecord, T]]
    #: offset to commit once this batch is durably in every sink
    next_offset: int

    def __post_init__(self) -> None:
        Handoff.__init__(self)
