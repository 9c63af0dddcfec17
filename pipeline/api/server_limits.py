"""The HTTP connection layer of the API's servers: how long a client may take, and what a malformed request gets back.

Both servers of the API use it: ``tickwire api`` (:mod:`pipeline.api.server`,
:func:`guarded_runner`) and the worker's web server, which is Faust's aiohttp
driver (:func:`protect_faust_web`, called while the worker is built, before it
starts). Contract, per connection:

- **Header timeout** (``TICKWIRE_API_HEADER_TIMEOUT_S``, slowloris protection):
  a request's head (request line and headers) must be complete within the
  timeout, counted from the connection's start for its first request and from
  the first byte of each later one (also when it arrives while the previous
  request is still being answered); otherwise the connection is closed, with
  no answer to that head (a request being answered then is answered first).
  Sending a byte now and then does not extend it. As Go's
  ``ReadHeaderTimeout``: the wait *between* requests is the keep-alive
  timeout's, and a request's body is not timed here.
- **Keep-alive timeout** (``TICKWIRE_API_KEEPALIVE_TIMEOUT_S``): a connection
  idle that long after its last answer is closed (aiohttp's own timer).
- **Malformed requests** (bad request line, method, version, header name or
  value, a line over 8190 bytes, too many headers, a bad body framing): aiohttp
  answers 400 and closes, and here the body is always the fixed JSON
  ``{"error": "malformed HTTP request"}``. aiohttp's own page quotes the
  offending bytes, which may be an ``Authorization`` header; neither the answer
  nor the log line (``tickwire.api``: peer address and the kind of error only)
  ever holds any byte of the request. Other errors aiohttp answers itself (a
  handler that raised past the API's wrapper: 500; a handler timeout: 504) get
  the same kind of fixed JSON body.

It relies on aiohttp's :class:`~aiohttp.web_protocol.RequestHandler` internals
(``_request_count``: heads parsed, including malformed ones; ``_messages``:
parsed requests with their bodies; ``_waiter``: set while the connection
waits for a request; ``_upgraded``), as of aiohttp 3.14;
``tests/test_api_protection.py`` exercises both servers.
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from pipeline.config import Settings

if TYPE_CHECKING:
    from faust.web.drivers.aiohttp import Web as FaustWeb

log = logging.getLogger("tickwire.api")

#: The body of every 400 aiohttp answers for a request it could not parse.
MALFORMED_BODY = orjson.dumps({"error": "malformed HTTP request"})


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection protocol with the header timeout and fixed error bodies (see the module docstring)."""

    __slots__ = ("_header_timeout_s", "_header_deadline", "_heads_at_arm", "_newest_payload")

    def __init__(self, manager: web.Server, *, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout_s = header_timeout_s
        self._header_deadline: asyncio.TimerHandle | None = None
        self._heads_at_arm = 0
        #: The body of the newest request parsed (None before the first).
        self._newest_payload: StreamReader | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_header_deadline()  # the first request's head: from the connection's start

    def data_received(self, data: bytes) -> None:
        """Feed aiohttp's parser; the bytes were part of a head (its deadline runs from the first of them)
        unless they completed one (deadline met) or belonged to a body (not timed here). A head whose first
        bytes come in the read that completes the previous head or body is timed from the next read, or else
        bounded by the keep-alive timeout."""
        in_body = self._in_body()
        heads = self._request_count
        super().data_received(data)
        if self._request_count != heads:
            self._newest_payload = self._messages[-1][1] if self._messages else None
        if self._request_count != heads or in_body or self._in_body() or self._upgraded:
            self._disarm_header_deadline()
        elif data and self._header_deadline is None:
            self._arm_header_deadline()  # the first byte of a later request's head

    def _in_body(self) -> bool:
        return self._newest_payload is not None and not self._newest_payload.is_eof()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._heads_at_arm = self._request_count
        self._header_deadline = self._loop.call_later(self._header_timeout_s, self._header_deadline_passed)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _header_deadline_passed(self) -> None:
        """No head completed in time: close now if the connection waits for it, else once the requests being
        answered are (the incomplete head is never answered)."""
        self._header_deadline = None
        if self._request_count != self._heads_at_arm or self.transport is None or self._force_close:
            return
        log.debug("closing a connection from %s: no complete request head within %g s", self.peername,
                  self._header_timeout_s)
        if self._waiter is not None and not self._waiter.done():
            self.force_close()
        else:
            self.close()

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """The answer to a request aiohttp could not parse (400) or whose handler failed past the API's wrapper:
        a fixed JSON body, and a log line without the request's bytes (``message`` and ``exc`` quote them)."""
        if status == HTTPStatus.INTERNAL_SERVER_ERROR:
            log.error("unexpected error answering a request from %s", request.remote, exc_info=exc)
        elif self._request_count == 1 and isinstance(exc, BadHttpMethod):
            log.debug("refused a request from %s: not HTTP (%s)", request.remote, type(exc).__name__)
        else:
            log.info("refused a malformed request from %s: %d %s", request.remote, status,
                     type(exc).__name__ if exc is not None else "")
        if request.writer.output_size > 0:  # as aiohttp: part of an answer went out already
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        body = MALFORMED_BODY if status == HTTPStatus.BAD_REQUEST else orjson.dumps({"error": _phrase(status)})
        response = web.Response(status=status, body=body, content_type="application/json")
        response.force_close()
        return response


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "error"


class GuardedServer(web.Server):
    """aiohttp's low-level server, making :class:`GuardedRequestHandler` connections."""

    def __init__(self, handler: Any, *, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.header_timeout_s = header_timeout_s

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, loop=self._loop, header_timeout_s=self.header_timeout_s, **self._kwargs)


class GuardedAppRunner(web.AppRunner):
    """An :class:`aiohttp.web.AppRunner` whose server is a :class:`GuardedServer` (same handler and options)."""

    __slots__ = ("_header_timeout_s",)

    def __init__(self, app: web.Application, *, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._header_timeout_s = header_timeout_s

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()  # the application's server: its handler, request factory and options
        return GuardedServer(made.request_handler, request_factory=made.request_factory,
                             handler_cancellation=made.handler_cancellation, loop=asyncio.get_running_loop(),
                             header_timeout_s=self._header_timeout_s, **made._kwargs)


def guarded_runner(app: web.Application, settings: Settings, **kwargs: Any) -> GuardedAppRunner:
    """A runner of ``app`` with the header and keep-alive timeouts of ``settings`` (``kwargs``: AppRunner's)."""
    return GuardedAppRunner(app, header_timeout_s=settings.api_header_timeout_s,
                            keepalive_timeout=settings.api_keepalive_timeout_s, **kwargs)


def protect_faust_web(web_driver: FaustWeb, settings: Settings) -> None:
    """Give the worker's web server (Faust's aiohttp driver, ``app.web``) the protections of this module.

    Call it while building the worker, before the app starts: it replaces the
    driver's runner (``access_log=None``, as Faust makes it) by a guarded one.
    """
    if web_driver._runner.server is not None:
        raise RuntimeError("the worker's web server has started already")
    web_driver._runner = guarded_runner(web_driver.web_app, settings, access_log=None)
