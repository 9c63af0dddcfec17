"""Finding the records a store refuses inside a batch it refused as a whole.

Contract of :func:`isolate`: writes items ``[0, count)`` through
``write(lo, hi)`` (which must be idempotent: an item may be written more than
once), splitting a failing range in halves until every failure is pinned to a
single item. It returns those items' indexes with the store's error; every
other item was written. A transient error (:func:`pipeline.core.errors.classify`)
propagates at once: the store is unavailable, not refusing data, and the
caller retries the whole flush later (nothing is lost; what was written is
written again, harmlessly). Cost: about ``2·k·log2(count)`` writes for ``k``
refused items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable

from pipeline.core.codec import RawRecord
from pipeline.core.errors import classify, describe

WriteRange = Callable[[int, int], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Refusal:
    """A record whose data a store refused: it goes to the DLQ with ``error`` (``record`` None: nothing to keep)."""

    record: RawRecord | None
    sink: str
    error: str


async def isolate(count: int, write: WriteRange) -> list[tuple[int, BaseException]]:
    """Write every item the store accepts; return ``(index, error)`` of each item it refuses (see module docstring)."""
    refused: list[tuple[int, BaseException]] = []
    pending = [(0, count)] if count else []
    while pending:
        lo, hi = pending.pop()
        try:
            await write(lo, hi)
        except Exception as exc:  # noqa: BLE001 - classified: transient propagates, the rest is split
            if classify(exc) == "transient":
                raise
            if hi - lo == 1:
                refused.append((lo, exc))
                continue
            mid = (lo + hi) // 2
            pending.append((mid, hi))
            pending.append((lo, mid))
    refused.sort(key=lambda pair: pair[0])
    return refused


def refusals(sink: str, refused: list[tuple[int, BaseException]], origin: Callable[[int], RawRecord | None]) -> list[Refusal]:
    """:class:`Refusal` of each refused index, its record found by ``origin``."""
    return [Refusal(origin(index), sink, describe(exc)) for index, exc in refused]
