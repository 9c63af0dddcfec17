"""Routes to aiohttp handlers: authentication, validation, errors, metrics and JSON, in one wrapper.

:func:`mount` adds every route of the API to an aiohttp router: the worker's
(Faust's web server, :mod:`pipeline.api.in_worker`) or a standalone
application's (:mod:`pipeline.api.server`). For each request the wrapper:

1. for ``/v1`` routes: answers 503 until the context is ready, then checks
   the bearer key (401), takes a token of the key's rate limit (429,
   :mod:`pipeline.api.rate_limit`) and checks the key's scope (403); a key
   verified moments ago (:meth:`~pipeline.api.auth.Authenticator.known`)
   skips the database and its timeout;
2. parses the query, path and body as the route declares them (400);
3. runs the handler and serialises its answer with orjson; for a route
   declared ``cached``, through the context's answer cache
   (:mod:`pipeline.api.answer_cache`), keyed by path, tenant and parameters,
   bypassed by ``Cache-Control: no-cache``; such answers say
   ``X-Cache: hit`` or ``miss``. Whenever the handler runs for a caller with a
   key (not for an answer from the cache) and the route ``queries`` the
   stores, it runs in one of the tenant's query slots (waited for, else 429,
   :mod:`pipeline.api.query_slots`);
4. turns an :class:`~pipeline.api.errors.ApiError` into its JSON answer and
   anything unexpected into a bare 500 (details in the log, never to the
   client);
5. observes the latency in ``tickwire_api_request_seconds{route, status}``.

:func:`json_errors` is the middleware both servers install: what aiohttp
answers itself (an unknown path: 404; a method the path does not take: 405,
with ``Allow``) is JSON too, as every error of the API. ``/docs`` is the
interactive page of the document (:mod:`pipeline.api.docs_page`), ``/console`` the web console
(:mod:`pipeline.api.console_page`). A route answering a tick stream
(:mod:`pipeline.api.streams`) is counted in the metrics once admitted, then streams.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from pipeline.api import (
    candles,
    console_page,
    docs_page,
    graph,
    health,
    key_admin,
    openapi,
    patterns,
    performance,
    signals,
    streams,
    symbols,
    ticks,
)
from pipeline.api.context import ApiContext
from pipeline.api.errors import ApiError, forbidden
from pipeline.api.params import parse_body, parse_path, parse_query
from pipeline.api.routes import Call, Route
from pipeline.config import Settings
from pipeline.core.logs import log_context
from pipeline.core.metrics import API_REQUEST_SECONDS

log = logging.getLogger("tickwire.api")

_RESOURCES = (ticks, streams, symbols, candles, signals, performance, patterns, graph, key_admin)
_SCHEMAS: dict[str, dict[str, Any]] = {name: schema for module in (*_RESOURCES, health)
                                       for name, schema in module.SCHEMAS.items()}

AiohttpHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, headers=headers, content_type="application/json")


def _error(exc: ApiError) -> web.Response:
    return _json(exc.body(), exc.status, exc.headers)


async def _answer(route: Route, ctx: ApiContext, request: web.Request, log_fields: dict[str, object]) -> web.StreamResponse:
    principal = None
    if route.scope is not None:
        if not ctx.ready:
            raise ApiError(503, "the API is starting, try again shortly", headers={"Retry-After": "1"})
        header = request.headers.get("Authorization")
        principal = ctx.auth.known(header)
        if principal is None:
            async with ctx.using("postgres"):
                principal = await ctx.auth.authenticate(header)
        log_fields["tenant"] = principal.tenant  # what is logged while answering names the caller's tenant
        ctx.rates.admit(principal.key_id)
        if not principal.allows(route.scope):
            raise forbidden(f"this needs a key with scope {route.scope!r}; this key has {principal.scope!r}")
    params = parse_query(request.query, route.params)
    if request.match_info:
        params.update(parse_path(request.match_info, route.params))
    body = parse_body(await _read_body(request, ctx.settings.api_body_timeout_s), route.body.decoder) \
        if route.body is not None else None
    call = Call(principal, params, body)
    if route.cached and principal is not None:
        async def compute() -> bytes:
            return orjson.dumps(await _run(route, ctx, call))

        key = (route.path, principal.tenant, *params.values())
        answer, hit = await ctx.answers.answer(key, compute, refresh="no-cache" in request.headers.get("Cache-Control", ""))
        return web.Response(body=answer, status=route.status, content_type="application/json",
                            headers={"X-Cache": "hit" if hit else "miss"})
    result = await _run(route, ctx, call)
    if isinstance(result, web.StreamResponse):
        return result
    return _json(result, route.status)


async def _run(route: Route, ctx: ApiContext, call: Call) -> Any:
    """The handler's answer; in one of the caller's tenant's query slots when the route queries the stores."""
    if call.principal is None or not route.queries:
        return await route.handler(ctx, call)
    async with ctx.query_slots.slot(call.principal.tenant):
        return await route.handler(ctx, call)


async def _read_body(request: web.Request, timeout_s: float) -> bytes:
    """The request body, or 408 if the client has not sent it all within ``timeout_s`` (a stalled upload)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError:
        raise ApiError(408, f"the request body did not arrive within {timeout_s:g} s") from None


def handler(route: Route, ctx: ApiContext) -> AiohttpHandler:
    """The aiohttp handler of ``route`` (see the module docstring)."""
    latency_by_status: dict[int, Any] = {}  # the labelled histogram of each status seen

    def observe(status: int, seconds: float) -> None:
        histogram = latency_by_status.get(status)
        if histogram is None:
            histogram = latency_by_status[status] = API_REQUEST_SECONDS.labels(route.label, str(status))
        histogram.observe(seconds)

    async def handle(request: web.Request) -> web.StreamResponse:
        began = time.perf_counter()
        with log_context() as log_fields:
            try:
                response = await _answer(route, ctx, request, log_fields)
            except ApiError as exc:
                response = _error(exc)
            except web.HTTPException as exc:  # raised by aiohttp itself, e.g. a body over the size limit
                response = _error(ApiError(exc.status, exc.reason))
            except Exception:
                log.exception("unexpected error answering %s", route.label)
                response = _error(ApiError(500, "internal error"))
        observe(response.status, time.perf_counter() - began)
        if isinstance(response, streams.TickStream):  # counted as answered once admitted; now it streams
            await response.run(request)
        return response

    return handle


async def _metrics(ctx: ApiContext, call: Call) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _document(ctx: ApiContext, call: Call) -> web.Response:
    return web.Response(body=document_bytes(ctx.settings), content_type="application/json")


async def _docs(ctx: ApiContext, call: Call) -> web.Response:
    return web.Response(body=docs_page_bytes(ctx.settings), content_type="text/html", charset="utf-8",
                        headers=docs_page.HEADERS)


@web.middleware
async def json_errors(request: web.Request, handler: AiohttpHandler) -> web.StreamResponse:
    """Answer the errors aiohttp raises itself (no route for the path: 404; not for this method: 405) in JSON."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            message = "no such route (the routes: /openapi.json, or /docs)"
        elif exc.status == 405:
            message = f"method {request.method} is not allowed on this route"
        else:
            message = (exc.reason or "error").lower()
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return _json({"error": message}, exc.status, headers)


METRICS_ROUTE = Route("GET", "/metrics", "Prometheus metrics of this process", "operations", _metrics, None, scope=None,
                      responses={"200": {"description": "Prometheus text exposition format.",
                                         "content": {"text/plain": {"schema": {"type": "string"}}}}},
                      description="Consume path (inside the worker) and API request latency by route and status.")
DOCUMENT_ROUTE = Route("GET", "/openapi.json", "This document", "operations", _document, None, scope=None,
                       responses={"200": {"description": "The OpenAPI document.",
                                          "content": {"application/json": {"schema": {"type": "object"}}}}})
DOCS_ROUTE = Route("GET", "/docs", "This API as an interactive page", "operations", _docs, None, scope=None, queries=False,
                   responses={"200": {"description": "A self-contained HTML page, rendered from this document: every "
                                                     "route with its parameters and a form that sends it.",
                                      "content": {"text/html": {"schema": {"type": "string"}}}}},
                   description="No key needed to read it; requests sent from it use the key typed into the page. "
                               "Fetches nothing from other hosts.")


def all_routes(settings: Settings) -> tuple[Route, ...]:
    """Every route: ``/health`` (and its probes), ``/v1/...``, ``/metrics``, ``/openapi.json``, ``/docs`` and
    ``/console``."""
    resources = (route for module in _RESOURCES for route in module.routes(settings))
    return (health.ROUTE, health.LIVE_ROUTE, health.READY_ROUTE, *resources, METRICS_ROUTE, DOCUMENT_ROUTE, DOCS_ROUTE,
            *console_page.routes())


@functools.cache
def document_bytes(settings: Settings) -> bytes:
    """The OpenAPI document of :func:`all_routes` for ``settings``, as served."""
    return orjson.dumps(openapi.document(all_routes(settings), _SCHEMAS), option=orjson.OPT_INDENT_2)


@functools.cache
def docs_page_bytes(settings: Settings) -> bytes:
    """The ``/docs`` page of the document :func:`document_bytes` serves for ``settings``."""
    return docs_page.render(orjson.loads(document_bytes(settings)))


def mount(router: web.UrlDispatcher, ctx: ApiContext) -> None:
    """Add every route, served from ``ctx``, to ``router``."""
    for route in all_routes(ctx.settings):
        router.add_route(route.method, route.path, handler(route, ctx))
