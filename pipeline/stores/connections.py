"""Connections to the stores a worker writes to, opened and closed with the worker.

ClickHouse and the broker must answer at start; the vector and graph stores are
started on demand (:func:`pipeline.stores.roles.on_demand`), so a worker starts while
one of them is down and only the stage that writes it waits.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from mode import Service

from pipeline.config import Settings
from pipeline.core.errors import describe
from pipeline.core.kafka import make_producer
from pipeline.core.kafka import start as kafka_start
from pipeline.stores.analytics import AnalyticsStore
from pipeline.stores.cache import cache_client
from pipeline.stores.roles import make_graph_store, make_vector_store, on_demand

log = logging.getLogger("tickwire.connections")

#: How long the worker waits for the vector or graph store at start before going on without it.
STORE_START_TIMEOUT_S = 5.0


class Connections(Service):
    """Analytics, cache, vector and graph stores, and the producer. Started before the source, stopped after it."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:  # kwargs: mode's Service options
        self.settings = settings
        self.analytics = AnalyticsStore(settings)
        self.vectors = on_demand(make_vector_store(settings))
        self.graph = on_demand(make_graph_store(settings))
        self.cache = cache_client(settings, socket_timeout=5, socket_connect_timeout=5)
        self._producer: AIOKafkaProducer | None = None
        super().__init__(**kwargs)

    @property
    def producer(self) -> AIOKafkaProducer:
        """The started producer (only after the service started: aiokafka needs the loop)."""
        if self._producer is None:
            raise RuntimeError("Connections not started")
        return self._producer

    async def on_start(self) -> None:
        await self.analytics.migrate()
        for role, store in (("vectors", self.vectors), ("graph", self.graph)):
            try:
                async with asyncio.timeout(STORE_START_TIMEOUT_S):
                    await store.start()
            except Exception as exc:  # noqa: BLE001 - its stage pauses and starts it when it is back
                log.warning("%s store not available at start (%s); the stages that write it wait for it", role,
                            describe(exc, 200))
        self._producer = make_producer(self.settings)
        await kafka_start(self._producer, self.settings)
        log.info("connected: analytics %s, cache, vectors, graph, broker", "in-process (chDB)" if self.analytics.in_process else "server")

    async def on_stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
        await self.cache.aclose()
        await self.vectors.close()
        await self.graph.close()
        await self.analytics.close()
