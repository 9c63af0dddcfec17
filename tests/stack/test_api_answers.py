"""Cached answers of ClickHouse reads and coalesced hot-key reads: never staler than their rule allows.

- :class:`~pipeline.api.answer_cache.AnswerCache`: kept until the next commit (or for a TTL), bounded, shared
  by concurrent identical requests, never keeping failures (no stack needed).
- :meth:`~pipeline.api.auth.Authenticator.known`: a key verified moments ago is recognised without an HMAC,
  only until its record expires.
- :class:`~pipeline.api.hot_reads.HotKeyReader` against the stack's Valkey: each read sees what was written
  before it began, whatever else is in its round trip.
- On a real worker: ``/v1/ticks`` answers are hits until the worker commits new ticks, then show them; a
  tenant never gets another tenant's kept answer; ``Cache-Control: no-cache`` computes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis

from pipeline.api.answer_cache import AnswerCache, for_seconds, until_commit
from pipeline.api.auth import Authenticator, Principal
from pipeline.api.errors import ApiError
from pipeline.api.hot_reads import HotKeyReader
from pipeline.config import Settings
from pipeline.devstack.worker_process import WorkerProcess
from tests.api_support import ApiClient, free_port, issue_key, produce_ticks, start_api_worker
from tests.unit.test_api_units import FakePool
from tests.waiting import wait_until

T0 = 1_763_899_200_000


class Counted:
    """A computation that answers ``b"<n>"`` on its n-th call (optionally waiting for ``release`` first)."""

    def __init__(self, release: asyncio.Event | None = None) -> None:
        self.calls = 0
        self.release = release

    async def __call__(self) -> bytes:
        self.calls += 1
        n = self.calls
        if self.release is not None:
            await self.release.wait()
        return str(n).encode()


def test_until_commit_serves_a_kept_answer_only_while_no_commit_followed() -> None:
    commits: list[int | None] = [None]
    cache = until_commit(lambda: commits[0])
    compute = Counted()

    async def ask(key: str = "k", refresh: bool = False) -> tuple[bytes, bool]:
        return await cache.answer(key, compute, refresh=refresh)

    assert asyncio.run(ask()) == (b"1", False) and asyncio.run(ask()) == (b"2", False), \
        "before the checkpoint exists nothing is kept"
    commits[0] = 0
    assert asyncio.run(ask()) == (b"3", False)
    assert asyncio.run(ask()) == (b"3", True)
    assert asyncio.run(ask("other")) == (b"4", False), "another key is another answer"
    commits[0] = 1
    assert asyncio.run(ask()) == (b"5", False), "a commit makes every earlier answer stale"
    assert asyncio.run(ask()) == (b"5", True)
    assert asyncio.run(ask(refresh=True)) == (b"6", False), "no-cache computes"
    assert asyncio.run(ask()) == (b"6", True), "and keeps the fresher answer"


def test_an_answer_computed_across_a_commit_is_tagged_with_the_commit_before_its_query() -> None:
    commits = [0]
    release = asyncio.Event()
    compute = Counted(release)
    cache = until_commit(lambda: commits[0])

    async def scenario() -> None:
        first = asyncio.create_task(cache.answer("k", compute))
        await asyncio.sleep(0)
        commits[0] = 1  # rows flushed and committed while the query runs
        release.set()
        assert await first == (b"1", False)
        assert await cache.answer("k", compute) == (b"2", False), "computed before the commit: not served after it"

    asyncio.run(scenario())


def test_concurrent_identical_requests_share_one_computation_and_failures_are_not_kept() -> None:
    cache = until_commit(lambda: 0)
    release = asyncio.Event()
    compute = Counted(release)

    async def shared() -> None:
        tasks = [asyncio.create_task(cache.answer("k", compute)) for _ in range(5)]
        await asyncio.sleep(0)
        tasks[0].cancel()  # one requester going away does not cancel the others' computation
        release.set()
        answers = await asyncio.gather(*tasks[1:])
        assert answers == [(b"1", True)] * 4 and compute.calls == 1

    asyncio.run(shared())

    failures = [0]

    async def failing() -> bytes:
        failures[0] += 1
        raise ApiError(503, "clickhouse is unavailable")

    async def fails_twice() -> None:
        for _ in range(2):
            with pytest.raises(ApiError):
                await cache.answer("bad", failing)

    asyncio.run(fails_twice())
    assert failures[0] == 2 and len(cache) == 1, "a failure is never kept"


def test_for_seconds_serves_for_the_ttl_from_when_the_query_began() -> None:
    now = [100.0]
    cache = for_seconds(1.0, clock=lambda: now[0])
    compute = Counted()
    assert asyncio.run(cache.answer("k", compute)) == (b"1", False)
    now[0] = 100.99
    assert asyncio.run(cache.answer("k", compute)) == (b"1", True)
    now[0] = 101.0
    assert asyncio.run(cache.answer("k", compute)) == (b"2", False)


def test_the_least_recently_used_answers_are_dropped_beyond_the_bound() -> None:
    cache = AnswerCache(lambda: 0, float("inf"), max_entries=2)
    compute = Counted()
    for key in ("a", "b", "a", "c"):  # "a" used again, so "b" is the least recently used when "c" comes
        asyncio.run(cache.answer(key, compute))
    assert len(cache) == 2
    assert asyncio.run(cache.answer("a", compute))[1] and asyncio.run(cache.answer("c", compute))[1]
    assert not asyncio.run(cache.answer("b", compute))[1]


def test_a_known_key_is_recognised_without_the_database_until_its_record_expires() -> None:
    pool, now = FakePool(), [0.0]
    auth = Authenticator(pool, ttl_s=5.0, clock=lambda: now[0])  # type: ignore[arg-type]
    key = pool.add("00000000000000cc", "u" * 43)
    assert auth.known(f"Bearer {key}") is None, "never verified: the full check decides"
    principal = asyncio.run(auth.authenticate(f"Bearer {key}"))
    assert auth.known(f"Bearer {key}") == principal == Principal("acme", "read", "00000000000000cc")
    assert auth.known(f"Bearer {key[:-1]}x") is None, "another secret for the same key id is not known"
    assert auth.known(f"bearer {key}") is None and auth.known(None) is None
    now[0] = 5.0
    assert auth.known(f"Bearer {key}") is None, "expired with the record: revocation is seen as before"
    asyncio.run(auth.authenticate(f"Bearer {key}"))
    auth.forget("00000000000000cc")
    assert auth.known(f"Bearer {key}") is None


@pytest.mark.stack
def test_hot_key_reads_see_what_was_written_before_they_began(stack_settings: Settings) -> None:
    prefix = f"tw:test-{uuid.uuid4().hex[:8]}:tick"
    fields = ("bid", "time_msc")

    async def scenario() -> None:
        cache = redis.Redis.from_url(stack_settings.cache_connection_url)
        reader = HotKeyReader(cache, timeout_s=5.0)
        try:
            for n in range(40):
                await cache.hset(f"{prefix}:{n}", mapping={"bid": n, "time_msc": T0 + n})
            got = await asyncio.gather(*(reader.read(f"{prefix}:{n % 41}", fields) for n in range(200)))
            assert got[40] == [None, None], "a missing key reads as missing fields"
            assert all(got[n] == [str(n % 41).encode(), str(T0 + n % 41).encode()] for n in range(200) if n % 41 < 40)
            for n in range(3):  # a write, then a read: the read sees it
                await cache.hset(f"{prefix}:0", "bid", 1000 + n)
                assert (await reader.read(f"{prefix}:0", fields))[0] == str(1000 + n).encode()
        finally:
            await cache.aclose()

        dead = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
        failing = HotKeyReader(dead, timeout_s=5.0)
        outcomes = await asyncio.gather(*(failing.read(f"{prefix}:{n}", fields) for n in range(3)), return_exceptions=True)
        assert all(isinstance(o, Exception) for o in outcomes), "every read of a failed round trip fails"
        await dead.aclose()

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def worker(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    started = start_api_worker(stack_settings, Path(tmp_path_factory.mktemp("answers-worker")))
    try:
        yield started
    finally:
        started.stop()


def _tick(tenant: str, symbol: str, time_msc: int, bid: float) -> dict[str, object]:
    return {"tenant": tenant, "broker": "demo", "symbol": symbol, "time_msc": time_msc, "bid": bid, "ask": bid + 0.0002,
            "flags": 6}


@pytest.mark.stack
def test_kept_tick_pages_are_hits_until_a_commit_brings_new_ticks_and_stay_per_tenant(
        stack_settings: Settings, worker: WorkerProcess) -> None:
    suffix = uuid.uuid4().hex[:8]
    tenants = ("ca" + suffix, "cb" + suffix)
    clients = {t: ApiClient(worker.settings.api_url, issue_key(stack_settings, t).key) for t in tenants}
    price = {tenants[0]: 1.0, tenants[1]: 3.0}  # anything of B in A's answer would show
    asyncio.run(produce_ticks(stack_settings, [_tick(t, "CACHED", T0 + n, price[t]) for t in tenants for n in range(5)]))
    for tenant, client in clients.items():
        wait_until(lambda: len(client.data("/v1/ticks", symbol="CACHED")) == 5, timeout_s=60, what=f"{tenant}'s ticks")

    a, b = clients[tenants[0]], clients[tenants[1]]
    pairs = []  # another stage's checkpoint between the two requests may end a kept answer: try a few pages
    for limit in (3, 4, 2):
        first, again = a.get("/v1/ticks", symbol="CACHED", limit=limit), a.get("/v1/ticks", symbol="CACHED", limit=limit)
        assert first.headers["X-Cache"] == "miss" and again.body == first.body
        pairs.append(again.headers["X-Cache"])
        if pairs[-1] == "hit":
            break
    assert pairs[-1] == "hit", f"a repeated page is answered from memory: {pairs}"
    other = b.get("/v1/ticks", symbol="CACHED", limit=limit)  # the very request A's answer is kept for
    assert other.headers["X-Cache"] == "miss", "the tenant is part of the key"
    assert {row["bid"] for row in other.body["data"]} == {3.0}
    assert a.request("GET", "/v1/ticks", {"symbol": "CACHED"}, headers={"Cache-Control": "no-cache"}).headers[
        "X-Cache"] == "miss"

    asyncio.run(produce_ticks(stack_settings, [_tick(tenants[0], "CACHED", T0 + 100, 2.0)]))
    def shows_the_new_tick() -> bool:
        rows = a.data("/v1/ticks", symbol="CACHED")
        return bool(rows) and rows[0]["time_msc"] == T0 + 100

    wait_until(shows_the_new_tick, timeout_s=60, what="the committed tick in the kept page's place")
    assert {row["bid"] for row in b.data("/v1/ticks", symbol="CACHED")} == {3.0}
    latest = a.data("/v1/ticks/latest", symbol="CACHED", broker="demo")
    assert latest[0]["time_msc"] == T0 + 100 and latest[0]["bid"] == 2.0
    assert b.data("/v1/ticks/latest", symbol="CACHED", broker="demo")[0]["bid"] == 3.0
    bad = a.get("/v1/ticks/latest", symbol="CACHED")
    assert bad.status == 400 and bad.body["parameter"] == "broker"
