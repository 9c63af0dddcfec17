"""Batched reads (pipeline.api.batched_reads): coalescing, freshness, one slot per batch, failures, isolation."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from pipeline.api.batched_reads import BatchedReads
from pipeline.api.errors import ApiError
from pipeline.api.query_slots import TenantQuerySlots

DEADLINE_S = 5.0


class Store:
    """A fake store: each batch waits for ``release`` and records what it was asked, in order."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[str]]] = []
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.fail: Exception | None = None

    async def fetch(self, group: str, items: Sequence[str]) -> dict[str, str]:
        self.batches.append((group, list(items)))
        number = len(self.batches)
        self.started.set()
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return {item: f"{group}:{item}:{number}" for item in items}


async def _until(condition: asyncio.Event) -> None:
    async with asyncio.timeout(DEADLINE_S):
        await condition.wait()


def test_reads_arriving_during_a_batch_go_out_together_in_the_next_one() -> None:
    async def scenario() -> None:
        store, reads = Store(), BatchedReads(TenantQuerySlots(3, 10.0))
        first = asyncio.create_task(reads.read(store.fetch, "t1", "g", "A"))
        await _until(store.started)
        later = [asyncio.create_task(reads.read(store.fetch, "t1", "g", symbol)) for symbol in ("B", "C", "B")]
        await asyncio.sleep(0)
        assert store.batches == [("g", ["A"])], "nothing joins a batch that began before it"
        store.release.set()
        assert await first == "g:A:1"
        assert await asyncio.gather(*later) == ["g:B:2", "g:C:2", "g:B:2"]
        assert store.batches == [("g", ["A"]), ("g", ["B", "C"])], "one query for the reads that waited; B once"

    asyncio.run(scenario())


def test_groups_and_tenants_run_their_batches_concurrently() -> None:
    async def scenario() -> None:
        store, reads = Store(), BatchedReads(TenantQuerySlots(3, 10.0))
        tasks = [asyncio.create_task(reads.read(store.fetch, tenant, group, "A"))
                 for tenant, group in (("t1", "g"), ("t1", "h"), ("t2", "g"))]
        async with asyncio.timeout(DEADLINE_S):
            while len(store.batches) < 3:  # all three in flight at once, none waiting for another
                await asyncio.sleep(0.001)
        store.release.set()
        assert sorted(answer[:3] for answer in await asyncio.gather(*tasks)) == ["g:A", "g:A", "h:A"]

    asyncio.run(scenario())


def test_a_batch_holds_one_of_its_tenants_slots_and_times_out_with_429_as_one() -> None:
    async def scenario() -> None:
        slots = TenantQuerySlots(1, 0.05)
        store, reads = Store(), BatchedReads(slots)
        first = asyncio.create_task(reads.read(store.fetch, "t1", "g", "A"))
        await _until(store.started)
        assert slots.running("t1") == 1
        other_group = [asyncio.create_task(reads.read(store.fetch, "t1", "h", symbol)) for symbol in ("A", "B")]
        other_tenant = asyncio.create_task(reads.read(store.fetch, "t2", "h", "A"))
        results = await asyncio.gather(*other_group, return_exceptions=True)
        assert all(isinstance(r, ApiError) and r.status == 429 for r in results), results
        store.release.set()
        assert await first == "g:A:1"
        assert (await other_tenant).startswith("h:A:"), "another tenant's batch never waits for t1's slot"
        assert slots.running("t1") == 0 and slots.running("t2") == 0

    asyncio.run(scenario())


def test_a_failed_batch_fails_each_of_its_reads_and_the_next_batch_runs() -> None:
    async def scenario() -> None:
        store, reads = Store(), BatchedReads(TenantQuerySlots(3, 10.0))
        store.fail = ConnectionError("store down")
        store.release.set()
        results = await asyncio.gather(*(reads.read(store.fetch, "t1", "g", s) for s in ("A", "B")), return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results), results
        store.fail = None
        assert (await reads.read(store.fetch, "t1", "g", "A")).startswith("g:A:")

    asyncio.run(scenario())


def test_a_reader_that_goes_away_leaves_the_batch_to_the_others() -> None:
    async def scenario() -> None:
        store, reads = Store(), BatchedReads(TenantQuerySlots(3, 10.0))
        first = asyncio.create_task(reads.read(store.fetch, "t1", "g", "A"))
        await _until(store.started)
        leaving = asyncio.create_task(reads.read(store.fetch, "t1", "g", "B"))
        staying = asyncio.create_task(reads.read(store.fetch, "t1", "g", "C"))
        await asyncio.sleep(0)
        leaving.cancel()
        store.release.set()
        assert await first == "g:A:1" and await staying == "g:C:2"
        with pytest.raises(asyncio.CancelledError):
            await leaving

    asyncio.run(scenario())
