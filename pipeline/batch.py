"""A batch of consumed records of one topic-partition, as it travels to an agent.

The source hands each fetched batch to its agent as one event (so Faust's
per-event cost is paid once per batch) and waits on :attr:`RecordBatch.done`:
the batch counts as processed only when the agent has handed every record to
its sinks. Offsets are committed later, by the checkpoint.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator

from aiokafka.structs import ConsumerRecord


@dataclass(eq=False)
class RecordBatch:
    topic: str
    partition: int
    records: list[ConsumerRecord]
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def next_offset(self) -> int:
        """The offset to commit once this batch is durably in its sinks."""
        return self.records[-1].offset + 1

    @asynccontextmanager
    async def processing(self) -> AsyncIterator[RecordBatch]:
        """Resolve :attr:`done` when the block exits (with its exception, if any)."""
        try:
            yield self
        except BaseException as exc:
            if not self.done.done():
                self.done.set_exception(exc)
            if isinstance(exc, Exception):
                return  # the source re-raises it; the agent stays alive
            raise
        else:
            if not self.done.done():
                self.done.set_result(None)
