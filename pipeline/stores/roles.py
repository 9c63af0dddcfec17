"""Choosing the backend of each role from the settings.

Agents and the API only see the role interfaces (:class:`VectorStore`,
:class:`GraphStore`); this is the one place that knows which product is behind
them. Both are started on demand (:class:`StartedOnDemand`): a store that is down
when the worker starts pauses only the stage that writes it. Whether a backend's settings fit it (a URL of the right scheme, a
Weaviate URL at all) is checked when the settings are loaded
(:class:`~pipeline.config.Settings`), so a bad combination fails at start,
naming the setting, before anything is built here.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, TypeVar, cast

from pipeline.config import Settings
from pipeline.contracts.patterns import DIMENSION
from pipeline.core.errors import TransientStoreError, describe
from pipeline.stores.graph.base import GraphStore
from pipeline.stores.vectors.base import VectorStore

Role = TypeVar("Role", VectorStore, GraphStore)


class StartedOnDemand:
    """A role's store, started on its first use (and again after a failed start).

    Every coroutine method of the store first makes sure it is started; if it
    cannot be (the store is down), the call raises :class:`TransientStoreError`,
    so the stage that needed it pauses and retries like for any outage.
    """

    def __init__(self, inner: VectorStore | GraphStore) -> None:
        self._inner = inner
        self._started = False
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        async with self._lock:
            if not self._started:
                await self._inner.start()
                self._started = True

    async def close(self) -> None:
        self._started = False
        await self._inner.close()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        async def started_first(*args: Any, **kwargs: Any) -> Any:
            try:
                await self.start()
            except Exception as exc:  # noqa: BLE001 - whatever stops the start, the store is not available now
                raise TransientStoreError(f"{type(self._inner).__name__} cannot start: {describe(exc, 300)}") from exc
            return await attribute(*args, **kwargs)

        return started_first


def on_demand(store: Role) -> Role:
    """``store`` started on first use (see :class:`StartedOnDemand`)."""
    return cast(Role, StartedOnDemand(store))


def make_vector_store(settings: Settings) -> VectorStore:
    """pgvector (in TICKWIRE_POSTGRES_DSN's database) or Weaviate (TICKWIRE_WEAVIATE_URL)."""
    if settings.vector_backend == "weaviate":
        from pipeline.stores.vectors.weaviate import WeaviateVectorStore

        return WeaviateVectorStore.from_settings(settings, DIMENSION)
    from pipeline.stores.vectors.pgvector import PgVectorStore

    return PgVectorStore(settings.postgres_connection_dsn, DIMENSION)


def make_graph_store(settings: Settings) -> GraphStore:
    """FalkorDB (TICKWIRE_GRAPH_URL redis://) or ArangoDB (TICKWIRE_GRAPH_URL http(s)://)."""
    if settings.graph_backend == "arangodb":
        from pipeline.stores.graph.arangodb import ArangoGraphStore

        return ArangoGraphStore.from_settings(settings)
    from pipeline.stores.graph.falkordb import FalkorGraphStore

    return FalkorGraphStore(settings.graph_connection_url)
