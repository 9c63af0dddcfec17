"""The stores the API reads, its key checker and health probes, and whether it is ready to serve.

Two ways to build one:
- inside the worker (:mod:`pipeline.api.in_worker`), on the worker's own
  connections (already started and closed by the worker) and the status of
  its stages;
- :meth:`ApiContext.standalone` for ``tickwire api``: its own connections,
  opened by :meth:`start` and closed by :meth:`close`.

Either way :meth:`start` opens the operational database (migrating its schema)
and only then sets :attr:`ready`; ``/v1`` answers 503 until then. The context
also holds the answer cache of ClickHouse reads, whose freshness rule its
builder chooses (:mod:`pipeline.api.answer_cache`), the coalescing reader
of hot keys (:mod:`pipeline.api.hot_reads`), and the limits that keep one
client or tenant from slowing the others: requests per key
(:mod:`pipeline.api.rate_limit`), store queries per tenant
(:mod:`pipeline.api.query_slots`, taken per request or, for reads coalesced
across requests, per batch: :mod:`pipeline.api.batched_reads`) and open tick streams
(:mod:`pipeline.api.stream_slots`), which :meth:`ApiContext.close` ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import asyncpg
import redis.asyncio as redis

from pipeline.api.answer_cache import AnswerCache, for_seconds
from pipeline.api.auth import Authenticator
from pipeline.api.batched_reads import BatchedReads
from pipeline.api.errors import ApiError, unavailable
from pipeline.api.health import Health
from pipeline.api.hot_reads import HotKeyReader
from pipeline.api.migrations import open_pool
from pipeline.api.query_slots import TenantQuerySlots
from pipeline.api.rate_limit import KeyRateLimiter
from pipeline.api.stream_slots import StreamSlots
from pipeline.config import Settings
from pipeline.stores.analytics import AnalyticsStore
from pipeline.stores.cache import cache_client
from pipeline.stores.graph.base import GraphStore
from pipeline.stores.roles import make_graph_store, make_vector_store, on_demand
from pipeline.stores.vectors.base import VectorStore

log = logging.getLogger("tickwire.api")

#: The longest a request waits on one store before answering 503.
STORE_TIMEOUT_S = 10.0



class PipelineView(Protocol):
    """What the API may know of the stages running in its process (:class:`pipeline.runtime.status.PipelineStatus`)."""

    @property
    def consuming(self) -> bool:
        """Every stage's consumer runs."""

    def version(self) -> int | None:
        """Changes whenever a stage that writes ClickHouse checkpoints (None: do not keep answers)."""

    def report(self) -> dict[str, dict[str, Any]]:
        """Each stage: state, what paused it, last commit, lag, circuits."""


class ApiContext:
    def __init__(self, settings: Settings, *, analytics: AnalyticsStore, cache: redis.Redis, vectors: VectorStore,
                 graph: GraphStore, status: PipelineView | None, owns_stores: bool, answers: AnswerCache) -> None:
        self.settings = settings
        self.analytics = analytics
        self.cache = cache
        self.hot_keys = HotKeyReader(cache, STORE_TIMEOUT_S)
        #: Answers of routes declared ``cached``.
        self.answers = answers
        self.vectors = vectors
        self.graph = graph
        #: The stages of this process; None when none runs here (``tickwire api``).
        self.status = status
        #: ClickHouse reads of the API: the read-only session pool, each query cancelled in the store after
        #: ``TICKWIRE_API_QUERY_TIMEOUT_S``.
        self.reads = analytics.reads(settings.api_query_timeout_s)
        self.health = Health(self)
        #: Requests per API key (:mod:`pipeline.api.rate_limit`).
        self.rates = KeyRateLimiter(settings.api_rate_per_s, settings.api_rate_burst)
        #: Store queries running at once per tenant (:mod:`pipeline.api.query_slots`).
        self.query_slots = TenantQuerySlots(settings.api_tenant_queries, settings.api_query_timeout_s)
        #: Concurrent reads of one kind by one tenant, one store query per batch, in those slots
        #: (:mod:`pipeline.api.batched_reads`).
        self.batched = BatchedReads(self.query_slots)
        #: Open tick streams per key, tenant and process (:mod:`pipeline.api.stream_slots`).
        self.streams = StreamSlots(settings.api_streams_per_key, settings.api_streams_per_tenant,
                                   settings.api_streams_max)
        self._owns_stores = owns_stores
        self._pool: asyncpg.Pool | None = None
        self._auth: Authenticator | None = None
        #: True between :meth:`start` and :meth:`close`.
        self.ready = False

    @classmethod
    def standalone(cls, settings: Settings) -> ApiContext:
        """A context with its own connections (``tickwire api``); none is opened before :meth:`start`.

        ClickHouse is then a server other processes write: answers are kept for
        :data:`~pipeline.api.answer_cache.SHARED_STORE_TTL_S` seconds at most.
        """
        return cls(settings, analytics=AnalyticsStore(settings),
                   cache=cache_client(settings, socket_timeout=5, socket_connect_timeout=5),
                   vectors=on_demand(make_vector_store(settings)), graph=on_demand(make_graph_store(settings)), status=None,
                   owns_stores=True,
                   answers=for_seconds())

    @property
    def pool(self) -> asyncpg.Pool:
        """The operational database (tenants, keys); only once started."""
        if self._pool is None:
            raise RuntimeError("ApiContext is not started")
        return self._pool

    @property
    def auth(self) -> Authenticator:
        if self._auth is None:
            raise RuntimeError("ApiContext is not started")
        return self._auth

    async def start(self) -> None:
        """Open what this context owns and the operational database; raises if a store does not answer."""
        if self._owns_stores:
            await self.analytics.migrate()
        self._pool = await open_pool(self.settings.postgres_connection_dsn)
        self._auth = Authenticator(self._pool)
        self.ready = True

    async def close(self) -> None:
        self.ready = False
        self.streams.close()
        await self.health.close()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
        if self._owns_stores:
            await self.cache.aclose()
            await self.vectors.close()
            await self.graph.close()
            await self.analytics.close()

    @asynccontextmanager
    async def using(self, dependency: str) -> AsyncIterator[None]:
        """Run a store call: if the store fails or takes over :data:`STORE_TIMEOUT_S`, answer 503 naming it.

        Parameters are validated before any store is called, so a store error here
        is never the client's fault; its details go to the log only.
        """
        try:
            async with asyncio.timeout(STORE_TIMEOUT_S):
                yield
        except ApiError:
            raise
        except Exception as exc:  # noqa: BLE001 - any store failure is "unavailable" to the client
            raise store_failed(dependency, exc) from None


def store_failed(dependency: str, exc: BaseException) -> ApiError:
    """The 503 answer to a failure of ``dependency`` during a request (logged here, with no details to the client)."""
    log.warning("%s failed during a request: %s: %s", dependency, type(exc).__name__, str(exc)[:200])
    return unavailable(dependency)
