"""A batch of consumed records of one topic-partition, as it travels to a stage's agents.

The stage's source decodes each fetched batch once (rejects go to the DLQ
there) and hands it to every agent of the stage that reads its topic as ONE
event, so Faust's per-event cost is paid once per batch. The source then waits
on :attr:`RecordBatch.done`, which resolves when every one of those agents has
handed the batch to its sinks. An agent whose handler raises on some records
does not fail the batch: the records at fault are found by running the handler
again on halves of the batch (handlers only buffer into idempotent sinks, so
running one twice is harmless) and end up in :attr:`RecordBatch.failed`, which
the source dead-letters (reason ``processing_error``). Offsets are committed
later, by the stage's checkpoint.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable, Generic, Sequence, TypeVar

import msgspec

from pipeline.core.codec import RawRecord
from pipeline.core.errors import describe

T = TypeVar("T", bound=msgspec.Struct)
S = TypeVar("S")

#: A stage's processing of one batch: ``handler(messages, sinks)``; it only buffers into sinks (no I/O).
Handler = Callable[[Sequence[tuple[RawRecord, T]], S], None]


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
    #: records a handler failed on, with the error (dead-lettered by the source)
    failed: list[tuple[RawRecord, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        Handoff.__init__(self)


def run_isolating(handler: Handler[T, S], messages: Sequence[tuple[RawRecord, T]], sinks: S) -> list[tuple[RawRecord, str]]:
    """Run ``handler`` on ``messages``; if it raises, find the messages it fails on by halves.

    Returns the failing records with their error; every other message was handled
    (some possibly twice, which idempotent sinks absorb).
    """
    if not messages:
        return []
    try:
        handler(messages, sinks)
        return []
    except Exception as exc:  # noqa: BLE001 - a record's failure must not stop the stage
        if len(messages) == 1:
            return [(messages[0][0], describe(exc))]
    middle = len(messages) // 2
    return run_isolating(handler, messages[:middle], sinks) + run_isolating(handler, messages[middle:], sinks)
