"""``tickwire api``: the query API as its own process.

It serves the same routes as the worker (:mod:`pipeline.api.app`) on a bare
aiohttp application at ``settings.api_host:api_port``, with its own
connections to every store. Consume-path metrics and consumer lag belong to
the worker; here ``/metrics`` has the API's own and ``/health`` reports
``consumer_lag: null``.

With a ClickHouse server any number of these run beside the workers. With
chDB (``chdb://`` DSN) the data directory belongs to one process at a time:
``tickwire api`` may serve it when no worker runs on it (it then owns the
directory, and a worker cannot start on it until the API stops); while a
worker holds it, :func:`check_standalone` (and :func:`serve`, should a worker
start in between) stops it at once with :class:`StandaloneError`, one line:
the worker serves the API itself then. A worker and ``tickwire api`` never
share a chDB directory.

Connections have the header-read and keep-alive timeouts and the fixed answer
to malformed requests of :mod:`pipeline.api.server_limits`, and errors aiohttp
answers itself (404, 405) are JSON (:func:`pipeline.api.app.json_errors`), as
in the worker. It logs as the worker does (:mod:`pipeline.core.logs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from aiohttp import web
from aiohttp.web_runner import GracefulExit

from pipeline.api.app import json_errors, mount
from pipeline.api.context import ApiContext
from pipeline.api.server_limits import guarded_runner
from pipeline.api.streams import end_streams_on_shutdown
from pipeline.config import Settings
from pipeline.core.logs import configure_logging

log = logging.getLogger("tickwire.api")


class StandaloneError(RuntimeError):
    """The API cannot run apart here; the message (one line) says why and what to do."""


#: What chDB says when another process holds the data directory (it also prints it on stderr itself).
_CHDB_HELD = ("Error initializing EmbeddedServer", "Cannot lock file")


def _held_error(settings: Settings) -> StandaloneError:
    return StandaloneError(
        f"the chDB data at {settings.chdb_path} (TICKWIRE_CLICKHOUSE_DSN) is held by another process, "
        "a running worker: it serves the API itself, or stop it first (a worker and tickwire api cannot share a chDB "
        "directory; with a ClickHouse server they run side by side)")


def chdb_held(path: Path) -> bool:
    """Whether a process holds the chDB data directory ``path`` (the lock chDB keeps on its ``status`` file)."""
    import fcntl

    try:
        fd = os.open(path / "status", os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases the lock if this probe took it
    return False


def check_standalone(settings: Settings) -> None:
    """Raise :class:`StandaloneError` (one line) when this process cannot serve: a worker holds the chDB directory."""
    if settings.chdb_path is not None and chdb_held(settings.chdb_path):
        raise _held_error(settings)


def chdb_held_elsewhere(settings: Settings, exc: BaseException) -> StandaloneError | None:
    """The one-line error for ``exc`` when it says another process holds the chDB directory (a worker that started
    after :func:`check_standalone`), else None."""
    if settings.chdb_path is None:
        return None
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    if not any(marker in str(e) for e in chain for marker in _CHDB_HELD):
        return None
    return _held_error(settings)


def make_app(ctx: ApiContext) -> web.Application:
    """An aiohttp application serving the API from ``ctx``, which it starts and closes with itself."""
    application = web.Application(middlewares=[json_errors])
    mount(application.router, ctx)

    async def start(_: web.Application) -> None:
        await ctx.start()
        log.info("query API ready at %s (OpenAPI document at /openapi.json)", ctx.settings.api_url)

    async def stop(_: web.Application) -> None:
        await ctx.close()

    application.on_startup.append(start)
    application.on_cleanup.append(stop)
    end_streams_on_shutdown(application, ctx)  # open tick streams never hold the shutdown
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
    """Serve until SIGINT or SIGTERM (then finish requests in flight and close the stores).

    Raises :class:`StandaloneError` before listening when the chDB directory is held by a worker (see
    :func:`check_standalone`, which says so without chDB's own message on stderr). Logs as the worker does
    (:func:`pipeline.core.logs.configure_logging`: ``TICKWIRE_LOG_LEVEL``, ``TICKWIRE_LOG_FORMAT``)."""
    import uvloop

    configure_logging(settings)
    uvloop.install()
    with contextlib.suppress(GracefulExit):
        try:
            asyncio.run(run(make_app(ApiContext.standalone(settings)), settings))
        except Exception as exc:
            held = chdb_held_elsewhere(settings, exc)
            if held is None:
                raise
            raise held from None
