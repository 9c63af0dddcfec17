"""The factory of the worker: a Faust app with every selected stage, the query API and the operator SQL route.

Nothing happens at import: :func:`build_worker` builds everything from the
settings it is given (:mod:`pipeline.runtime.worker` runs it). Per stage
(:mod:`pipeline.runtime.topology`): its sinks, a batch source with its own
consumer group, checkpoint and circuits, and its handlers as Faust agents.
Shared: the connections to the stores (each stage gets its own ClickHouse
session), the log-end probe behind honest lag, the read-only status view,
and the web server (API, ``/health``, ``/metrics``).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Any

import faust
from mode import Service

from pipeline.api.in_worker import serve_api
from pipeline.api.operator_sql import serve_operator_sql
from pipeline.config import Settings
from pipeline.core.kafka import ssl_context
from pipeline.runtime.log_ends import LogEnds
from pipeline.runtime.source import BatchSource
from pipeline.runtime.stage import Stage
from pipeline.runtime.status import PipelineStatus
from pipeline.runtime.topology import stages
from pipeline.stores.connections import Connections

#: Allocations (net, of container objects) between collections of the youngest generation.
GC_GEN0_THRESHOLD = 20_000


class TickwireApp(faust.App):
    """Faust's app, draining tickwire's batch sources before Faust's own shutdown.

    On stop, Faust first suspends its flow control, after which agents take no
    more events; each stage's final batch and checkpoint need the agents, so the
    sources drain first.
    """

    drain_first: list[BatchSource] = []

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
        for source in self.drain_first:
            await source.drain()
        await super().on_stop()


class TickwireWorker(faust.Worker):
    """Faust's worker (the app's ``Worker``), leaving logging as :func:`pipeline.core.logs.configure_logging` set it.

    Faust (mode) would replace the root logger's handlers by its own (its format, colours) and add a
    terminal spinner; this keeps only the redirection of stray writes to standard output and error into
    log records (so a print cannot break the JSON format).
    """

    def _setup_logging(self) -> None:
        self.spinner = None  # Faust then logs "Ready" instead of drawing on the terminal
        if self.redirect_stdouts:
            self._redirect_stdouts()


class StatusMetrics(Service):
    """Keeps the lag and stage state gauges current (and learns the groups' committed offsets) on the probe's
    interval."""

    def __init__(self, status: PipelineStatus, interval_s: float, **kwargs: Any) -> None:  # kwargs: mode's Service options
        self._status = status
        self._interval_s = interval_s
        super().__init__(**kwargs)

    async def on_started(self) -> None:
        self.add_future(self._refresh_forever())

    async def _refresh_forever(self) -> None:
        while not self.should_stop:
            try:
                await self._status.refresh_committed()
                self._status.update_metrics()
            except Exception:  # noqa: BLE001 - metrics must never stop the worker; the next round tries again
                pass
            await self.sleep(self._interval_s)


def faust_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """Faust's own clients (its app group) connect like every other tickwire client (pipeline.core.kafka)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings) if protocol in ("SSL", "SASL_SSL") else None
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password is not None else None
    return faust.SASLCredentials(username=settings.kafka_sasl_username, password=password, ssl_context=context,
                                 mechanism=settings.kafka_sasl_mechanism)


def _start_with_app(app: faust.App, service: Service) -> None:
    """Start ``service`` with ``app``, after the services registered before it."""
    app.service(service)  # type: ignore[arg-type]  # faust types App.service for classes; it starts instances too


@dataclass
class Worker:
    """What :func:`build_worker` made (the app runs it; tests and tools may look at the rest)."""

    app: TickwireApp
    connections: Connections
    stages: list[Stage]
    status: PipelineStatus


def build_worker(settings: Settings) -> Worker:
    """The worker for ``settings``: the stages of ``settings.stage_names``, the API and the operator SQL route."""
    app = TickwireApp(
        settings.app_id,
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers],
        store="memory://",
        autodiscover=False,
        datadir=str(settings.state_dir / "faust"),
        web_host=settings.api_host,
        web_port=settings.api_port,
        web_bind=settings.api_host,
        broker_credentials=faust_credentials(settings),
        broker_session_timeout=settings.session_timeout_ms / 1000,
        broker_heartbeat_interval=max(settings.session_timeout_ms / 5000, 0.5),
        topic_partitions=1,
        producer_acks=-1,
        Worker=TickwireWorker,
    )
    connections = Connections(settings)
    _start_with_app(app, connections)  # Faust starts services in registration order: the stores before the stages
    running = [Stage(spec, app, settings, connections) for spec in stages(settings.stage_names)]
    for stage in running:
        _start_with_app(app, stage.source)
    log_ends = LogEnds(settings, {topic for stage in running for topic in stage.spec.inputs})
    _start_with_app(app, log_ends)
    status = PipelineStatus(list(running), log_ends, settings.stage_stall_after_s)
    _start_with_app(app, StatusMetrics(status, settings.lag_probe_interval_ms / 1000))
    serve_api(app, settings, connections, status)
    serve_operator_sql(app, settings, connections, status)
    app.drain_first = [stage.source for stage in running]
    return Worker(app, connections, running, status)
