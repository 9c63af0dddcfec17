"""``GET /v1/ticks/stream``: the newest tick of one series as server-sent events, sent only when it changes.

The live counterpart of ``/v1/ticks/latest`` (what the console shows as the last price). Contract:

- ``symbol`` and ``broker`` as for ``/v1/ticks/latest``; the tenant is the key's.
  The answer is ``text/event-stream`` (UTF-8), made of:

  - ``event: tick`` with ``data:`` a ``LatestTick`` (the item ``/v1/ticks/latest``
    answers): sent first when the series has a newest tick, then whenever it
    changes. The hot key is read every :data:`POLL_INTERVAL_S` through the
    context's coalescing :class:`~pipeline.api.hot_reads.HotKeyReader`, so all
    the streams (and ``/v1/ticks/latest`` requests) of a process share one cache
    round trip per interval; a tick that changed twice within an interval is
    sent once, as it was at the read.
  - a comment line (``: keep-alive``) after :data:`HEARTBEAT_S` without
    anything else to send, for proxies that cut silent connections;
  - ``event: end`` with ``data: {"reason": ...}``, the last thing sent before
    the server ends the stream: ``idle`` (no tick sent for
    ``TICKWIRE_API_STREAM_IDLE_TIMEOUT_S``), ``unauthorized`` (the key was revoked:
    it is checked again every :data:`~pipeline.api.auth.KEY_CACHE_TTL_S`),
    ``unavailable`` (the cache or the key store failed), ``shutdown`` (the
    server is stopping). A client reconnects when it wants more.

- **Bounded.** Opening one takes a token of the key's rate limit, as any request,
  and a stream slot: at most ``TICKWIRE_API_STREAMS_PER_KEY`` per key,
  ``TICKWIRE_API_STREAMS_PER_TENANT`` per tenant (a tenant's admin may make
  more keys) and ``TICKWIRE_API_STREAMS_MAX`` per process; past any of them the
  answer is 429 with ``Retry-After``, before any byte of a stream. A stream
  reads only the hot cache, so it holds none of its tenant's query slots. The
  slot is freed when the stream ends: by the server (above), when the client
  goes away (seen within an interval), or when a write is not taken within
  :data:`WRITE_TIMEOUT_S` (a client that stopped reading: the connection is
  closed). The cache is read once before the stream opens, so an unavailable
  cache is a plain 503.
- The server's connection protections (:mod:`pipeline.api.server_limits`) stay
  as they are: the stream is an answer to a complete request, the header
  timeout still applies to anything the client sends after it, and the
  keep-alive timeout to the connection once the stream ended. Both servers end
  every stream when they begin to shut down (:func:`end_streams_on_shutdown`),
  so open streams never hold a graceful shutdown up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from pipeline.api.auth import KEY_CACHE_TTL_S, Principal
from pipeline.api.errors import ApiError
from pipeline.api.openapi import error_response
from pipeline.api.params import broker_param, symbol_param
from pipeline.api.routes import Call, Route
from pipeline.api.ticks import read_latest
from pipeline.config import Settings

if TYPE_CHECKING:
    from pipeline.api.context import ApiContext

log = logging.getLogger("tickwire.api")

#: How often a stream reads its hot key.
POLL_INTERVAL_S = 0.25
#: A comment line is sent after this long without anything else.
HEARTBEAT_S = 15.0
#: A write the client has not taken within this long ends the stream and closes its connection.
WRITE_TIMEOUT_S = 10.0
CONTENT_TYPE = "text/event-stream"


def event(name: str, data: dict[str, Any]) -> bytes:
    """One server-sent event (its data is one line of JSON)."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


HEARTBEAT = b": keep-alive\n\n"


class TickStream(web.StreamResponse):
    """The answer of one ``/v1/ticks/stream`` request: prepared and run by :meth:`run` once the route's wrapper
    has counted the request (:func:`pipeline.api.app.handler`); it holds its stream slot until :meth:`run` ends."""

    def __init__(self, ctx: ApiContext, principal: Principal, broker: str, symbol: str,
                 first: dict[str, Any] | None) -> None:
        super().__init__(status=200, headers={
            "Content-Type": f"{CONTENT_TYPE}; charset=utf-8", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no", "X-Content-Type-Options": "nosniff"})
        self._ctx = ctx
        self._principal = principal
        self._broker = broker
        self._symbol = symbol
        self._first = first

    async def run(self, request: web.Request) -> None:
        """Stream until an end of the module docstring; the slot is released whatever happens."""
        try:
            await self._stream(request)
        except (ConnectionError, TimeoutError) as exc:  # the client went away, or stopped reading
            log.debug("tick stream of %s ended: %s", self._principal.tenant, type(exc).__name__)
            if request.transport is not None:
                request.transport.abort()
        except Exception:
            log.exception("unexpected error in a tick stream")
            if request.transport is not None:
                request.transport.abort()
        finally:
            self._ctx.streams.release(self._principal)

    async def _write(self, data: bytes) -> None:
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await self.write(data)

    async def _stream(self, request: web.Request) -> None:
        ctx, slots = self._ctx, self._ctx.streams
        idle_s = ctx.settings.api_stream_idle_timeout_s
        header = request.headers.get("Authorization")
        await self.prepare(request)
        last = self._first
        now = time.monotonic()
        sent_at = written_at = now
        check_key_at = now + KEY_CACHE_TTL_S
        if last is not None:
            await self._write(event("tick", last))
        reason = "shutdown"
        while not slots.closed and ctx.ready:
            await asyncio.sleep(POLL_INTERVAL_S)
            if request.transport is None or request.transport.is_closing():
                return  # the client went away: nobody to tell
            if slots.closed or not ctx.ready:
                break
            now = time.monotonic()
            try:
                if now >= check_key_at:
                    check_key_at = now + KEY_CACHE_TTL_S
                    await self._check_key(header)
                tick = await read_latest(ctx, self._principal.tenant, self._broker, self._symbol)
            except ApiError as exc:
                reason = "unauthorized" if exc.status == 401 else "unavailable"
                break
            now = time.monotonic()
            if tick is not None and tick != last:
                last, sent_at = tick, now
                await self._write(event("tick", tick))
                written_at = now
            elif now - sent_at >= idle_s:
                reason = "idle"
                break
            elif now - written_at >= HEARTBEAT_S:
                await self._write(HEARTBEAT)
                written_at = now
        await self._write(event("end", {"reason": reason}))

    async def _check_key(self, header: str | None) -> None:
        """Raise the 401 ApiError when the stream's key is no longer valid (revoked), another on a key store failure."""
        ctx = self._ctx
        if ctx.auth.known(header) is None:
            async with ctx.using("postgres"):
                await ctx.auth.authenticate(header)


async def stream(ctx: ApiContext, call: Call) -> TickStream:
    principal = call.principal
    assert principal is not None
    ctx.streams.acquire(principal)
    try:
        first = await read_latest(ctx, call.tenant, call.params["broker"], call.params["symbol"])
    except BaseException:
        ctx.streams.release(principal)
        raise
    return TickStream(ctx, principal, call.params["broker"], call.params["symbol"], first)


def end_streams_on_shutdown(application: web.Application, ctx: ApiContext) -> None:
    """End every stream of ``ctx`` as soon as ``application`` begins to shut down (before it waits for handlers)."""

    async def end(_: web.Application) -> None:
        ctx.streams.close()

    application.on_shutdown.append(end)


def routes(settings: Settings) -> tuple[Route, ...]:
    responses: dict[str, Any] = {
        "200": {"description": "A stream of server-sent events: `tick` (data: a LatestTick, when the newest tick "
                               "changes), `end` (data: {\"reason\": idle|unauthorized|unavailable|shutdown}, last), "
                               "and `: keep-alive` comment lines.",
                "content": {CONTENT_TYPE: {"schema": {"type": "string"}}}},
        **{str(status): error_response(status) for status in (400, 401, 429, 503)},
    }
    return (
        Route("GET", "/v1/ticks/stream", "The newest tick of a symbol at a broker, as it changes (server-sent events)",
              "ticks", stream, None, params=(symbol_param(), broker_param("The broker.", required=True)),
              queries=False, responses=responses,
              description=f"The hot key is read every {POLL_INTERVAL_S:g} s and sent when it changed. At most "
                          f"{settings.api_streams_per_key} streams per key, {settings.api_streams_per_tenant} per "
                          f"tenant and {settings.api_streams_max} per server (else 429); a stream that sent no tick "
                          f"for {settings.api_stream_idle_timeout_s:g} s ends (event `end`). EventSource cannot send "
                          "the Authorization header: read it with fetch()."),
    )


SCHEMAS: dict[str, dict[str, Any]] = {}  # events carry LatestTick (pipeline.api.ticks)
