"""One running stage: its sinks, its producer sink, its batch source (consumer group, checkpoint, circuits),
and its handlers registered as Faust agents."""

from __future__ import annotations

from typing import Any, AsyncIterator

import faust
from aiokafka import TopicPartition

from pipeline.config import Settings
from pipeline.core.batch import Handler, RecordBatch, run_isolating
from pipeline.runtime.checkpoint import Checkpoint
from pipeline.runtime.source import BatchSource
from pipeline.runtime.topology import ROLES, StageResources, StageSinks, StageSpec, after_publish
from pipeline.sinks.topic import TopicPublisher
from pipeline.stores.connections import Connections


def batch_agent(handler: Handler[Any, Any], sinks: StageSinks) -> Any:
    """A Faust agent that runs ``handler`` on each batch; records it fails on are set aside for the DLQ."""

    async def agent(batches: AsyncIterator[RecordBatch[Any]]) -> None:
        async for batch in batches:
            async with batch.processing():
                batch.failed.extend(run_isolating(handler, batch.messages, sinks))

    return agent


class Stage:
    def __init__(self, spec: StageSpec, app: faust.App, settings: Settings, connections: Connections) -> None:
        self.spec = spec
        self.name = spec.name
        self.publisher = TopicPublisher(lambda: connections.producer)
        self.sinks = spec.build(StageResources(spec.name, settings, connections, self.publisher, frozenset(ROLES)))
        self.source = BatchSource(app, spec.name, settings, self.sinks.ordered, self.publisher, after_publish(self.sinks),
                                  fetch_max_wait_ms=spec.fetch_max_wait_ms(settings))
        self.writes_analytics = spec.writes_analytics
        for route in spec.routes:
            channel = self.source.route(route.topic, route.message_type, eager=route.eager)
            name = f"tickwire.{spec.name}.{route.handler.__name__}"
            app.agent(channel, name=name)(batch_agent(route.handler, self.sinks))

    @property
    def checkpoint(self) -> Checkpoint:
        return self.source.checkpoint

    @property
    def consuming(self) -> bool:
        return self.source.consuming

    def assignment(self) -> set[TopicPartition]:
        return self.source.assignment()

    async def group_committed(self, tp: TopicPartition) -> int | None:
        """The offset the stage's consumer group has committed for ``tp`` (None if none)."""
        if self.source.consumer is None:
            return None
        committed: int | None = await self.source.consumer.committed(tp)
        return committed
