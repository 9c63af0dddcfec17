"""The probes: ``GET /health`` (the full report), ``/health/live`` (liveness) and ``/health/ready`` (readiness).

``/health``: is this API process able to serve, and is the pipeline around it healthy?

Each dependency — broker, ClickHouse, cache, PostgreSQL, vector store, graph
store — is asked a real question, all in parallel, each within
:data:`PROBE_TIMEOUT_S` (ClickHouse on a session of its own, so slow queries
never make it look down), so the answer always comes within about that long.
The body gives each one's status (``up``/``down``), latency and whether it is
required, plus, when stages run in this process (the worker), each stage's
report (:mod:`pipeline.runtime.status`): ``running``, ``paused`` (which
circuit, since when), ``stalled`` or ``starting``, its last commit, its lag
per partition in records and seconds, and its circuits; else ``stages`` is null.

Status code: 200 when the API is ready and every required dependency is up,
else 503. Required: ClickHouse, the cache and PostgreSQL (API keys), and in
the worker the broker; the vector and graph stores are not (while one is
down only the stage that writes it pauses, and the API answers the rest).
``status`` is ``degraded`` when something optional is down or a stage is not
running. The body also gives the package ``version`` and the process's
``uptime_s``. No key is needed and no tenant data is shown; a failure is
described by its kind only (no addresses or credentials).

``/health/live``: the process and its event loop are alive. Answered by the
handler itself, asking no store: always 200 ``{"status": "alive", "uptime_s": ...}``
(a store that is down must not get the process restarted). For a container's
HEALTHCHECK or a liveness probe.

``/health/ready``: can this process do its work now? 200 when the API is ready,
every required dependency is up (the same probes as ``/health``, the required
ones only) and no stage is ``stalled``; else 503, with the reasons. A ``paused``
stage does not make it unready: pausing is the designed reaction to an outage
of a store the stage writes (it resumes by itself from its own offsets), and
taking the worker out of rotation, or restarting it, would not bring the store
back; a required store that is down does make it unready (a reason of its own). A stage that is ``starting`` does not either:
the API serves meanwhile. For a readiness probe or a load balancer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from aiokafka.client import AIOKafkaClient
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from pipeline.api.routes import Call, Route
from pipeline.core.kafka import client_options
from pipeline.core.metrics import package_version
from pipeline.stores.cache import cache_client

if TYPE_CHECKING:
    from pipeline.api.context import ApiContext

#: The longest any one probe may take.
PROBE_TIMEOUT_S = 2.0
DEPENDENCIES = ("broker", "clickhouse", "cache", "postgres", "vector", "graph")
#: When this process loaded the API (at its start: the worker and ``tickwire api`` import it while starting).
_STARTED = time.monotonic()


def uptime_s() -> float:
    """Seconds since this process started (see :data:`_STARTED`)."""
    return round(time.monotonic() - _STARTED, 3)


class ProbeFailed(RuntimeError):
    """A store answered, but not as expected."""


class Health:
    """Runs the probes of one :class:`~pipeline.api.context.ApiContext`."""

    def __init__(self, ctx: ApiContext) -> None:
        self._ctx = ctx
        # Its own cache connection without retries: the probe reports the cache as it is, at once.
        self._cache = cache_client(ctx.settings, socket_timeout=PROBE_TIMEOUT_S, socket_connect_timeout=PROBE_TIMEOUT_S,
                                   retry=Retry(NoBackoff(), 0))
        self._probes: dict[str, Callable[[], Awaitable[object]]] = {
            "broker": self._broker, "clickhouse": self._clickhouse, "cache": self._cache.ping,
            "postgres": self._postgres, "vector": ctx.vectors.ping, "graph": ctx.graph.ping,
        }

    def required(self, dependency: str) -> bool:
        if dependency in ("vector", "graph"):
            return False
        return dependency != "broker" or self._ctx.status is not None

    async def check(self) -> tuple[int, dict[str, Any]]:
        """``(status code, body)`` as described in the module docstring."""
        results = await asyncio.gather(*(self._probe(name) for name in DEPENDENCIES))
        dependencies = dict(zip(DEPENDENCIES, results))
        required_down = [n for n, r in dependencies.items() if r["required"] and r["status"] == "down"]
        optional_down = [n for n, r in dependencies.items() if not r["required"] and r["status"] == "down"]
        stages = self._ctx.status.report() if self._ctx.status is not None else None
        troubled = any(stage["state"] != "running" for stage in (stages or {}).values())
        healthy = self._ctx.ready and not required_down
        status = "ok" if healthy and not optional_down and not troubled else "degraded" if healthy else "unavailable"
        body = {"status": status, "ready": self._ctx.ready, "version": package_version(), "uptime_s": uptime_s(),
                "dependencies": dependencies, "stages": stages}
        return (200 if healthy else 503), body

    async def readiness(self) -> tuple[int, dict[str, Any]]:
        """``(status code, body)`` of ``/health/ready`` (see the module docstring)."""
        required = [name for name in DEPENDENCIES if self.required(name)]
        results = await asyncio.gather(*(self._probe(name) for name in required))
        reasons = [] if self._ctx.ready else ["the API is starting"]
        reasons += [f"{name} is down ({result['error']})" for name, result in zip(required, results)
                    if result["status"] == "down"]
        states = {name: report["state"] for name, report in self._ctx.status.report().items()} \
            if self._ctx.status is not None else None
        reasons += [f"stage {name} is stalled" for name, state in (states or {}).items() if state == "stalled"]
        body = {"status": "not_ready" if reasons else "ready", "reasons": reasons, "stages": states}
        return (503 if reasons else 200), body

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
        client = AIOKafkaClient(**{**client_options(self._ctx.settings), "request_timeout_ms": int(PROBE_TIMEOUT_S * 1000)})
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


async def live(ctx: ApiContext, call: Call) -> dict[str, Any]:
    return {"status": "alive", "uptime_s": uptime_s()}


async def ready(ctx: ApiContext, call: Call) -> web.Response:
    status, body = await ctx.health.readiness()
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


_STATE = {"type": "string", "enum": ["starting", "running", "paused", "stalled"]}
_LAG = {
    "type": "object", "additionalProperties": False, "required": ["records", "seconds"],
    "properties": {
        "records": {"type": "integer", "minimum": 0, "description": "Log end minus the committed offset."},
        "seconds": {"type": ["number", "null"], "minimum": 0,
                    "description": "Newest record's time minus the last committed record's (null: not known yet)."},
    },
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Circuit": {
        "type": "object", "additionalProperties": False, "required": ["state", "failures", "open_since", "last_error"],
        "properties": {
            "state": {"type": "string", "enum": ["closed", "open"]},
            "failures": {"type": "integer", "minimum": 0},
            "open_since": {"type": ["number", "null"], "description": "Epoch seconds."},
            "last_error": {"type": "string", "description": "The kind of the last error."},
        },
    },
    "Stage": {
        "type": "object", "additionalProperties": False,
        "required": ["state", "paused_by", "last_commit_at", "lag", "circuits"],
        "properties": {
            "state": _STATE,
            "paused_by": {
                "type": ["object", "null"], "additionalProperties": False, "required": ["sink", "since", "error"],
                "properties": {"sink": {"type": "string"}, "since": {"type": ["number", "null"]},
                               "error": {"type": "string"}},
            },
            "last_commit_at": {"type": ["number", "null"], "description": "Epoch seconds of the last commit."},
            "lag": {
                "type": "object", "additionalProperties": False, "required": ["records", "seconds", "partitions"],
                "properties": {
                    "records": {"type": "integer", "minimum": 0},
                    "seconds": {"type": ["number", "null"], "minimum": 0},
                    "partitions": {"type": "object", "additionalProperties": _LAG},
                },
            },
            "circuits": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Circuit"}},
        },
    },
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
        "required": ["status", "ready", "version", "uptime_s", "dependencies", "stages"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded", "unavailable"]},
            "ready": {"type": "boolean", "description": "Whether the API has started (keys and stores open)."},
            "version": {"type": "string", "description": "The tickwire package version of this process."},
            "uptime_s": {"type": "number", "minimum": 0, "description": "Seconds since this process started."},
            "dependencies": {
                "type": "object", "additionalProperties": False, "required": list(DEPENDENCIES),
                "properties": {name: {"$ref": "#/components/schemas/Dependency"} for name in DEPENDENCIES},
            },
            "stages": {
                "type": ["object", "null"],
                "description": "Each stage running in this process (null: none, e.g. `tickwire api`).",
                "additionalProperties": {"$ref": "#/components/schemas/Stage"},
            },
        },
    },
}

SCHEMAS["Liveness"] = {
    "type": "object", "additionalProperties": False, "required": ["status", "uptime_s"],
    "properties": {
        "status": {"type": "string", "enum": ["alive"]},
        "uptime_s": {"type": "number", "minimum": 0, "description": "Seconds since this process started."},
    },
}
SCHEMAS["Readiness"] = {
    "type": "object", "additionalProperties": False, "required": ["status", "reasons", "stages"],
    "properties": {
        "status": {"type": "string", "enum": ["ready", "not_ready"]},
        "reasons": {"type": "array", "items": {"type": "string"},
                    "description": "Why it is not ready (empty when ready): starting, a required dependency down "
                                   "(with the kind of failure), a stage stalled."},
        "stages": {"type": ["object", "null"], "additionalProperties": _STATE,
                   "description": "Each stage's state (null: no stage runs in this process, e.g. `tickwire api`)."},
    },
}

_HEALTH_BODY = {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}
_READY_BODY = {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}}

ROUTE = Route("GET", "/health", "Health of the API and the stores around it", "operations", health, None, scope=None,
              responses={"200": {"description": "Ready, and every required dependency is up.", "content": _HEALTH_BODY},
                         "503": {"description": "Starting, or a required dependency is down.", "content": _HEALTH_BODY}},
              description="No key needed; no tenant data. Probes run in parallel, each bounded by a timeout.")
LIVE_ROUTE = Route("GET", "/health/live", "Liveness: the process and its event loop are alive", "operations", live, None,
                   scope=None, queries=False,
                   responses={"200": {"description": "Alive (always, while the process answers at all).",
                                      "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Liveness"}}}}},
                   description="No key needed. Asks no store: a store that is down never fails it. For a container's "
                               "HEALTHCHECK or a liveness probe.")
READY_ROUTE = Route("GET", "/health/ready", "Readiness: able to do its work now", "operations", ready, None, scope=None,
                    responses={"200": {"description": "Ready: started, every required dependency up, no stage stalled.",
                                       "content": _READY_BODY},
                               "503": {"description": "Not ready; `reasons` says why.", "content": _READY_BODY}},
                    description="No key needed. A `paused` stage (an optional store is down; it resumes by itself) "
                                "does not make it unready, a `stalled` one does, and so does a required dependency "
                                "that is down. For a readiness probe or a load balancer.")
