"""The Faust app of the tickwire worker and the pieces agents share.

Importing this module loads and validates the settings (a bad setting fails
here, naming it). Agents (``agents/``) import ``app``, ``source`` and
``sinks`` from here; ``pipeline.runtime.worker`` imports the agents and runs the app.
"""

from __future__ import annotations

import gc

import faust

from pipeline.config import get_settings
from pipeline.runtime.sink_set import SinkSet
from pipeline.runtime.source import BatchSource
from pipeline.sinks.topic import TopicPublisher
from pipeline.stores.connections import Connections

settings = get_settings()

#: Allocations (net, of container objects) between collections of the youngest generation.
GC_GEN0_THRESHOLD = 20_000


class TickwireApp(faust.App):
    """Faust's app, draining tickwire's batch source before Faust's own shutdown.

    On stop, Faust first suspends its flow control, after which agents take no
    more events; the source's final batch and checkpoint need the agents, so the
    source drains first.
    """

    drain_first: BatchSource | None = None

    async def on_started(self) -> None:
        """Keep the cyclic garbage collector off the startup heap and the per-batch path.

        Everything allocated while starting (modules, Faust, clients) lives as long as
        the process: ``gc.freeze`` moves it out of the collector's view, so a
        collection scans only objects made since. A batch allocates tens of
        thousands of short-lived records, so the first generation's threshold is
        raised from 700 to ``GC_GEN0_THRESHOLD``: far fewer collections for the same
        garbage (most of it is freed by reference counting anyway).
        """
        await super().on_started()
        gc.freeze()
        gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])

    async def on_stop(self) -> None:
        if self.drain_first is not None:
            await self.drain_first.drain()
        await super().on_stop()


app = TickwireApp(
    settings.app_id,
    broker=[f"kafka://{server}" for server in settings.bootstrap_servers],
    store="memory://",
    autodiscover=False,
    datadir=str(settings.state_dir / "faust"),
    web_host=settings.api_host,
    web_port=settings.api_port,
    web_bind=settings.api_host,
    broker_session_timeout=settings.session_timeout_ms / 1000,
    broker_heartbeat_interval=max(settings.session_timeout_ms / 5000, 0.5),
    topic_partitions=1,
    producer_acks=-1,
)

connections = Connections(settings)
publisher = TopicPublisher(lambda: connections.producer)
sinks = SinkSet(settings, connections, publisher)
source = BatchSource(app, settings, connections, sinks)
app.service(source)
app.drain_first = source
