"""The query API inside the worker: every route on Faust's aiohttp web server
(``settings.api_host:api_port``), reading the stores through the worker's own
connections (ClickHouse through the read-only session pool: never a stage's session).

Why Faust's web server: with chDB the worker process is the only one that can
read ClickHouse, and Faust already runs an aiohttp server on the worker's event
loop (the operator SQL route lives there too), so the API adds no second
server, port or framework; ``tickwire api`` serves the same aiohttp handlers on
a bare aiohttp application.

:func:`serve_api` registers the routes and :class:`ApiService`; the service
starts after the stages (Faust starts its services in registration order), so
the stores are open when it sets the API ready. Until then ``/v1`` answers
503 and ``/health`` reports ``ready: false``.

Answers of ClickHouse reads are kept until the next checkpoint of a stage
that writes ClickHouse when it is chDB (this process is then its only
writer), and for :data:`~pipeline.api.answer_cache.SHARED_STORE_TTL_S` seconds
when it is a server other workers write too (:mod:`pipeline.api.answer_cache`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

import faust
from mode import Service

from pipeline.api.answer_cache import for_seconds, until_commit
from pipeline.api.app import json_errors, mount
from pipeline.api.context import ApiContext, PipelineView
from pipeline.api.server_limits import protect_faust_web
from pipeline.api.streams import end_streams_on_shutdown
from pipeline.config import Settings
from pipeline.stores.connections import Connections

if TYPE_CHECKING:
    from faust.web.drivers.aiohttp import Web as AiohttpWeb

log = logging.getLogger("tickwire.api")


class ApiService(Service):
    """Opens the API's operational database (keys) with the worker and closes it before the stores."""

    def __init__(self, ctx: ApiContext, **kwargs: Any) -> None:  # mode's Service options (beacon, loop)
        self.ctx = ctx
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        await self.ctx.start()
        log.info("query API ready at %s (OpenAPI document at /openapi.json)", self.ctx.settings.api_url)

    async def on_stop(self) -> None:
        await self.ctx.close()


def serve_api(app: faust.App, settings: Settings, connections: Connections, status: PipelineView) -> ApiContext:
    """Mount the API on ``app``'s web server, reading ``connections`` and reporting ``status``."""
    answers = until_commit(status.version) if settings.chdb_path is not None else for_seconds()
    context = ApiContext(settings, analytics=connections.analytics, cache=connections.cache, vectors=connections.vectors,
                         graph=connections.graph, status=status, owns_stores=False, answers=answers)
    web = cast("AiohttpWeb", app.web)  # Faust's web driver is aiohttp (its default; tickwire sets no other)
    mount(web.web_app.router, context)
    web.web_app.middlewares.append(json_errors)  # errors aiohttp answers itself (404, 405) in JSON, as the API's
    protect_faust_web(web, settings)
    end_streams_on_shutdown(web.web_app, context)  # open tick streams never hold the web server's shutdown
    app.service(ApiService(context))  # type: ignore[arg-type]  # faust types App.service for classes; it starts instances too
    return context
