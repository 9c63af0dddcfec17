"""``tickwire api``: the query API as its own process, for when ClickHouse is a server.

It serves the same routes as the worker (:mod:`pipeline.api.app`) on a bare
aiohttp application at ``settings.api_host:api_port``, with its own
connections to every store. With chDB (``chdb://`` DSN) only the worker can
read the data, so this refuses to start: the worker serves the API then.
Consume-path metrics and consumer lag belong to the worker; here ``/metrics``
has the API's own and ``/health`` reports ``consumer_lag: null``.

Connections have the header-read and keep-alive timeouts and the fixed answer
to malformed requests of :mod:`pipeline.api.server_limits`, as in the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web
from aiohttp.web_runner import GracefulExit

from pipeline.api.app import mount
from pipeline.api.context import ApiContext
from pipeline.api.server_limits import guarded_runner
from pipeline.config import Settings

log = logging.getLogger("tickwire.api")


class StandaloneError(RuntimeError):
    """The settings do not allow a separate API process."""


def check_standalone(settings: Settings) -> None:
    """Raise :class:`StandaloneError` unless ClickHouse is a server this process may query."""
    if settings.chdb_path is not None:
        raise StandaloneError(
            "TICKWIRE_CLICKHOUSE_DSN is chdb:// (in-process ClickHouse): only the worker can read it, and the worker "
            f"serves the API itself (tickwire worker, at {settings.api_url}). tickwire api needs a ClickHouse server: "
            "TICKWIRE_CLICKHOUSE_DSN=http(s)://host:port")


def make_app(ctx: ApiContext) -> web.Application:
    """An aiohttp application serving the API from ``ctx``, which it starts and closes with itself."""
    application = web.Application()
    mount(application.router, ctx)

    async def start(_: web.Application) -> None:
        await ctx.start()
        log.info("query API ready at %s (OpenAPI document at /openapi.json)", ctx.settings.api_url)

    async def stop(_: web.Application) -> None:
        await ctx.close()

    application.on_startup.append(start)
    application.on_cleanup.append(stop)
    return application


async def run(application: web.Application, settings: Settings, *, handle_signals: bool = True) -> None:
    """Serve ``application`` at ``settings.api_host:api_port`` with the limits of
    :mod:`pipeline.api.server_limits` until cancelled or, with ``handle_signals``, until SIGINT or SIGTERM
    (:class:`~aiohttp.web_runner.GracefulExit`); then finish requests in flight and clean the application up."""
    runner = guarded_runner(application, settings, handle_signals=handle_signals, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.api_host, settings.api_port).start()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def serve(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM (then finish requests in flight and close the stores)."""
    import uvloop

    uvloop.install()
    with contextlib.suppress(GracefulExit):
        asyncio.run(run(make_app(ApiContext.standalone(settings)), settings))
