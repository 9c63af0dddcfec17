"""``GET /health``: is this API process able to serve, and is the pipeline around it healthy?

Each dependency — broker, ClickHouse, cache, PostgreSQL, vector store, graph
store — is asked a real question, all in parallel, each within
:data:`PROBE_TIMEOUT_S`, so the answer always comes within about that long.
The body gives each one's status (``up``/``down``), latency and whether it is
required, plus the consumer lag per input topic (records behind the fetch
high-watermark) and each sink's circuit breaker (an open circuit means the
pipeline is paused, retrying that store: status ``degraded``) when a consumer
runs in this process (the worker), else null.

Status code: 200 when the API is ready and every required dependency is up,
else 503. Inside the worker every dependency is required (the pipeline stalls
without any of them); in ``tickwire api`` the broker is reported but not
required (queries do not use it). No key is needed and no tenant data is shown;
a failure is described by its kind only (no addresses or credentials).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
import redis.asyncio as redis
from aiohttp import web
from aiokafka.client import AIOKafkaClient
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from pipeline.api.routes import Call, Route

if TYPE_CHECKING:
    from pipeline.api.context import ApiContext

#: The longest any one probe may take.
PROBE_TIMEOUT_S = 2.0
DEPENDENCIES = ("broker", "clickhouse", "cache", "postgres", "vector", "graph")


class ProbeFailed(RuntimeError):
    """A store answered, but not as expected."""


class Health:
    """Runs the probes of one :class:`~pipeline.api.context.ApiContext`."""

    def __init__(self, ctx: ApiContext) -> None:
        self._ctx = ctx
        # Its own cache connection without retries: the probe reports the cache as it is, at once.
        self._cache = redis.Redis.from_url(ctx.settings.cache_url, socket_timeout=PROBE_TIMEOUT_S,
                                           socket_connect_timeout=PROBE_TIMEOUT_S, retry=Retry(NoBackoff(), 0))
        self._probes: dict[str, Callable[[], Awaitable[object]]] = {
            "broker": self._broker, "clickhouse": self._clickhouse, "cache": self._cache.ping,
            "postgres": self._postgres, "vector": ctx.vectors.ping, "graph": ctx.graph.ping,
        }

    def required(self, dependency: str) -> bool:
        return dependency != "broker" or self._ctx.lag is not None

    async def check(self) -> tuple[int, dict[str, Any]]:
        """``(status code, body)`` as described in the module docstring."""
        results = await asyncio.gather(*(self._probe(name) for name in DEPENDENCIES))
        dependencies = dict(zip(DEPENDENCIES, results))
        required_down = [n for n, r in dependencies.items() if r["required"] and r["status"] == "down"]
        optional_down = [n for n, r in dependencies.items() if not r["required"] and r["status"] == "down"]
        sinks = self._ctx.circuits() if self._ctx.circuits is not None else None
        paused = any(circuit["state"] == "open" for circuit in (sinks or {}).values())
        healthy = self._ctx.ready and not required_down
        status = "ok" if healthy and not optional_down and not paused else "degraded" if healthy else "unavailable"
        lag = self._ctx.lag() if self._ctx.lag is not None else None
        body = {"status": status, "ready": self._ctx.ready, "dependencies": dependencies, "consumer_lag": lag,
                "sinks": sinks}
        return (200 if healthy else 503), body

    async def close(self) -> None:
        await self._cache.aclose()

    async def _probe(self, name: str) -> dict[str, Any]:
        began = time.perf_counter()
        outcome: dict[str, Any] = {"status": "up", "latency_ms": None, "required": self.required(name)}
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                await self._probes[name]()
        except TimeoutError:
            outcome.update(status="down", error=f"no answer within {PROBE_TIMEOUT_S:g} s")
        except Exception as exc:  # noqa: BLE001 - any failure means down; only its kind is shown
            outcome.update(status="down", error=type(exc).__name__)
        else:
            outcome["latency_ms"] = round((time.perf_counter() - began) * 1000, 3)
        return outcome

    async def _broker(self) -> None:
        client = AIOKafkaClient(bootstrap_servers=self._ctx.settings.bootstrap_servers,
                                request_timeout_ms=int(PROBE_TIMEOUT_S * 1000))
        try:
            await client.bootstrap()
            if not client.cluster.brokers():
                raise ProbeFailed("metadata names no broker")
        finally:
            await client.close()

    async def _clickhouse(self) -> None:
        if not await self._ctx.analytics.ping():
            raise ProbeFailed("ping refused")

    async def _postgres(self) -> None:
        await self._ctx.pool.fetchval("SELECT 1")


async def health(ctx: ApiContext, call: Call) -> web.Response:
    status, body = await ctx.health.check()
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


SCHEMAS: dict[str, dict[str, Any]] = {
    "Dependency": {
        "type": "object", "additionalProperties": False, "required": ["status", "latency_ms", "required"],
        "properties": {
            "status": {"type": "string", "enum": ["up", "down"]},
            "latency_ms": {"type": ["number", "null"], "description": "Time the probe took; null when down."},
            "required": {"type": "boolean", "description": "Whether this process is unhealthy without it."},
            "error": {"type": "string", "description": "Why it is down (the kind of failure only)."},
        },
    },
    "Health": {
        "type": "object", "additionalProperties": False,
        "required": ["status", "ready", "dependencies", "consumer_lag", "sinks"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded", "unavailable"]},
            "ready": {"type": "boolean", "description": "Whether the API has started (keys and stores open)."},
            "dependencies": {
                "type": "object", "additionalProperties": False, "required": list(DEPENDENCIES),
                "properties": {name: {"$ref": "#/components/schemas/Dependency"} for name in DEPENDENCIES},
            },
            "sinks": {
                "type": ["object", "null"],
                "description": "Each sink's circuit breaker (null: no consumer in this process). An open circuit: "
                               "consumption is paused and the write retried with backoff.",
                "additionalProperties": {
                    "type": "object", "additionalProperties": False,
                    "required": ["state", "failures", "open_since", "last_error"],
                    "properties": {
                        "state": {"type": "string", "enum": ["closed", "open"]},
                        "failures": {"type": "integer", "minimum": 0},
                        "open_since": {"type": ["number", "null"], "description": "Epoch seconds."},
                        "last_error": {"type": "string"},
                    },
                },
            },
            "consumer_lag": {
                "type": ["object", "null"], "additionalProperties": {"type": "integer", "minimum": 0},
                "description": "Records behind the log end per input topic (null: no consumer in this process).",
            },
        },
    },
}

_HEALTH_BODY = {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}

ROUTE = Route("GET", "/health", "Health of the API and the stores around it", "operations", health, None, scope=None,
              responses={"200": {"description": "Ready, and every required dependency is up.", "content": _HEALTH_BODY},
                         "503": {"description": "Starting, or a required dependency is down.", "content": _HEALTH_BODY}},
              description="No key needed; no tenant data. Probes run in parallel, each bounded by a timeout.")
