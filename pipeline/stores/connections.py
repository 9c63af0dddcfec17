"""Connections to the stores a worker writes to, opened and closed with the worker."""

from __future__ import annotations

import logging

import redis.asyncio as redis
from aiokafka import AIOKafkaProducer
from mode import Service

from pipeline.config import Settings
from pipeline.stores.analytics import AnalyticsStore
from pipeline.stores.roles import make_graph_store, make_vector_store

log = logging.getLogger("tickwire.connections")


def make_producer(settings: Settings) -> AIOKafkaProducer:
    """The producer tickwire uses everywhere: acks from all replicas, small linger, batched."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        linger_ms=5,
        max_batch_size=1 << 20,
        max_request_size=8 << 20,
        request_timeout_ms=30_000,
    )


class Connections(Service):
    """Analytics, cache, vector and graph stores, and the producer. Started before the source, stopped after it."""

    def __init__(self, settings: Settings, **kwargs: object) -> None:
        self.settings = settings
        self.analytics = AnalyticsStore(settings)
        self.vectors = make_vector_store(settings)
        self.graph = make_graph_store(settings)
        self.cache = redis.Redis.from_url(settings.cache_url, socket_timeout=5, socket_connect_timeout=5)
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
        await self.vectors.start()
        await self.graph.start()
        self._producer = make_producer(self.settings)
        await self._producer.start()
        log.info("connected: analytics %s, cache, vectors, graph, broker", "in-process (chDB)" if self.analytics.in_process else "server")

    async def on_stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
        await self.cache.aclose()
        await self.vectors.close()
        await self.graph.close()
        await self.analytics.close()
