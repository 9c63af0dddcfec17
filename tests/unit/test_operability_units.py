"""Operability without a stack: the metrics the alerts and dashboards use (rows written, last checkpoint, stage
state, build info), the probes' verdicts (readiness keys on `stalled` and required dependencies, not on `paused`),
JSON for the errors aiohttp answers itself, and the self-contained /docs page."""

from __future__ import annotations

import asyncio
import platform
import re
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Sequence

import jsonschema
import orjson
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from aiokafka import TopicPartition
from prometheus_client import REGISTRY

from pipeline.api import docs_page
from pipeline.api.app import all_routes, docs_page_bytes, document_bytes, json_errors
from pipeline.api.health import SCHEMAS, Health, live
from pipeline.config import load_settings
from pipeline.core.circuit import CircuitBreaker
from pipeline.core.metrics import STAGE_STATES, package_version
from pipeline.core.retry import RetryPolicy
from pipeline.runtime.checkpoint import Checkpoint, Committed
from pipeline.runtime.log_ends import LogEnd
from pipeline.runtime.status import PipelineStatus
from pipeline.sinks.base import ItemSink
from pipeline.sinks.topic import TopicPublisher

TP = TopicPartition("mt5.ticks.v1", 0)


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


# --- metrics ----------------------------------------------------------------------------------------------------


@dataclass
class Rec:
    offset: int
    topic: str = "mt5.ticks.v1"
    partition: int = 0
    timestamp: int = 0
    key: bytes | None = b"k"
    value: bytes | None = b"v"


class Rows(ItemSink[int]):
    """Buffers ints; its store refuses the values in ``refuse`` (a constraint violation: dead-lettered)."""

    def __init__(self, name: str, refuse: frozenset[int] = frozenset()) -> None:
        self._name, self._refuse = name, refuse
        self.buffer: list[int] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def pending(self) -> int:
        return len(self.buffer)

    def _items(self) -> Sequence[int]:
        return list(self.buffer)

    async def _write(self, items: Sequence[int]) -> None:
        if any(value in self._refuse for value in items):
            raise ValueError("constraint violated")

    def _origin(self, item: int) -> Rec:
        return Rec(item)  # type: ignore[return-value]  # a RawRecord's fields

    def _clear(self) -> None:
        self.buffer = []


class AckAll:
    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[Any]:
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_a_checkpoint_counts_rows_written_per_sink_and_stamps_its_commit() -> None:
    stage = "ops-" + str(time.monotonic_ns())
    sink = Rows("clickhouse.ops", refuse=frozenset({7}))

    async def commit(offsets: dict[TopicPartition, int]) -> None:
        pass

    publisher = TopicPublisher(lambda: AckAll())  # type: ignore[arg-type,return-value]  # acknowledges every record
    checkpoint = Checkpoint(stage, commit, [sink], publisher, interval_s=60, max_records=10, stop=asyncio.Event(),
                            policy=RetryPolicy(max_backoff_s=0.01, first_backoff_s=0.001))
    assert sample("tickwire_rows_written_total", stage=stage, sink="clickhouse.ops") == 0, "exists from the start"
    assert sample("tickwire_last_checkpoint_timestamp_seconds", stage=stage) is None, "no commit yet"
    await checkpoint.commit()  # nothing marked: flushes, commits no offsets
    assert sample("tickwire_last_checkpoint_timestamp_seconds", stage=stage) is None
    sink.buffer = [1, 2, 7, 4]
    checkpoint.mark(TP, 5, 4)
    before = time.time()
    await checkpoint.commit()
    assert sample("tickwire_rows_written_total", stage=stage, sink="clickhouse.ops") == 3, "4 buffered, 1 refused"
    assert sample("tickwire_rows_written_total", stage=stage, sink="producer") == 1, "the dead letter of the refused row"
    stamped = sample("tickwire_last_checkpoint_timestamp_seconds", stage=stage)
    assert stamped is not None and before <= stamped <= time.time() and stamped == checkpoint.last_commit_at


@dataclass
class FakeCheckpoint:
    circuits: dict[str, CircuitBreaker] = field(default_factory=dict)
    committed: dict[TopicPartition, Committed] = field(default_factory=dict)
    last_commit_at: float | None = None
    commits: int = 0


@dataclass
class FakeStage:
    name: str
    checkpoint: FakeCheckpoint = field(default_factory=FakeCheckpoint)
    writes_analytics: bool = False
    consuming: bool = True

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    async def group_committed(self, tp: TopicPartition) -> int | None:
        return None


def test_the_stage_state_gauge_is_1_for_the_current_state_only() -> None:
    name = "ops-" + str(time.monotonic_ns())
    stage = FakeStage(name, FakeCheckpoint(committed={TP: Committed(100, 1_000)}, last_commit_at=time.time()),
                      consuming=False)
    ends = SimpleNamespace(ends={TP: LogEnd(100, 1_000, time.time())})
    status = PipelineStatus([stage], ends, 60)  # type: ignore[list-item,arg-type]

    def states() -> dict[str, float | None]:
        return {state: sample("tickwire_stage_state", stage=name, state=state) for state in STAGE_STATES}

    status.update_metrics()
    assert states() == {"starting": 1, "running": 0, "paused": 0, "stalled": 0}
    stage.consuming = True
    status.update_metrics()
    assert states() == {"starting": 0, "running": 1, "paused": 0, "stalled": 0}
    circuit = CircuitBreaker("cache.hot_ticks", name)
    stage.checkpoint.circuits["cache.hot_ticks"] = circuit
    circuit.failed(ConnectionError("down"))
    status.update_metrics()
    assert states() == {"starting": 0, "running": 0, "paused": 1, "stalled": 0}
    circuit.succeeded()
    stage.checkpoint.last_commit_at = time.time() - 120
    ends.ends[TP] = LogEnd(150, 2_000, time.time())
    status.update_metrics()
    assert states() == {"starting": 0, "running": 0, "paused": 0, "stalled": 1}
    assert status.stage_report(stage)["state"] == "stalled"  # type: ignore[arg-type]  # the same verdict as /health


def test_build_info_names_the_version_and_python() -> None:
    assert sample("tickwire_build_info", version=package_version(), python=platform.python_version()) == 1
    assert package_version() not in ("", "unknown")


# --- probes -----------------------------------------------------------------------------------------------------


class ProbedHealth(Health):
    """The probes' verdicts with dependencies that are up or down as told (no store is asked)."""

    def __init__(self, ctx: Any, down: tuple[str, ...] = ()) -> None:
        self._ctx = ctx
        self._down = down

    async def _probe(self, name: str) -> dict[str, Any]:
        if name in self._down:
            return {"status": "down", "latency_ms": None, "required": self.required(name), "error": "ConnectionError"}
        return {"status": "up", "latency_ms": 1.0, "required": self.required(name)}


def worker_ctx(*states: str, ready: bool = True) -> Any:
    report = {f"s{i}": {"state": state} for i, state in enumerate(states)}
    return SimpleNamespace(ready=ready, status=SimpleNamespace(report=lambda: report))


def readiness(ctx: Any, down: tuple[str, ...] = ()) -> tuple[int, dict[str, Any]]:
    status, body = asyncio.run(ProbedHealth(ctx, down).readiness())
    jsonschema.validate(body, SCHEMAS["Readiness"])
    return status, body


def test_readiness_keys_on_stalled_stages_and_required_dependencies_not_on_paused_ones() -> None:
    assert readiness(worker_ctx("running", "paused", "starting")) == (
        200, {"status": "ready", "reasons": [], "stages": {"s0": "running", "s1": "paused", "s2": "starting"}})
    assert readiness(worker_ctx("running"), down=("vector", "graph"))[0] == 200, "optional stores"
    status, body = readiness(worker_ctx("running", "stalled"))
    assert status == 503 and body["status"] == "not_ready" and body["reasons"] == ["stage s1 is stalled"]
    status, body = readiness(worker_ctx("running"), down=("cache",))
    assert status == 503 and body["reasons"] == ["cache is down (ConnectionError)"]
    status, body = readiness(worker_ctx(ready=False))
    assert status == 503 and body["reasons"] == ["the API is starting"]
    standalone = SimpleNamespace(ready=True, status=None)
    assert readiness(standalone, down=("broker",)) == (200, {"status": "ready", "reasons": [], "stages": None})


def test_liveness_asks_nothing_and_answers_alive() -> None:
    body = asyncio.run(live(None, None))  # type: ignore[arg-type]  # no context, no store: nothing to ask
    jsonschema.validate(body, SCHEMAS["Liveness"])
    assert body["status"] == "alive" and body["uptime_s"] >= 0


def test_the_probes_and_docs_are_in_the_document_without_a_key() -> None:
    settings = load_settings()
    document = orjson.loads(document_bytes(settings))
    for path, schema in (("/health/live", "Liveness"), ("/health/ready", "Readiness"), ("/health", "Health")):
        operation = document["paths"][path]["get"]
        assert "security" not in operation
        refs = {answer["content"]["application/json"]["schema"]["$ref"] for answer in operation["responses"].values()}
        assert refs == {f"#/components/schemas/{schema}"} and schema in document["components"]["schemas"]
    assert set(document["paths"]["/health/ready"]["get"]["responses"]) == {"200", "503"}
    assert {"version", "uptime_s"} <= set(document["components"]["schemas"]["Health"]["required"])
    assert "text/html" in document["paths"]["/docs"]["get"]["responses"]["200"]["content"]


# --- errors aiohttp answers itself ---------------------------------------------------------------------------------


async def test_404_and_405_that_aiohttp_raises_are_answered_in_json() -> None:
    async def not_found(request: web.Request) -> web.StreamResponse:
        raise web.HTTPNotFound()

    async def wrong_method(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMethodNotAllowed("POST", ["GET"])

    async def fine(request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    answer = await json_errors(make_mocked_request("GET", "/nope"), not_found)
    assert isinstance(answer, web.Response) and answer.status == 404 and answer.content_type == "application/json"
    assert "error" in orjson.loads(answer.body)  # type: ignore[arg-type]
    answer = await json_errors(make_mocked_request("POST", "/health"), wrong_method)
    assert isinstance(answer, web.Response) and answer.status == 405 and answer.headers["Allow"] == "GET"
    assert orjson.loads(answer.body) == {"error": "method POST is not allowed on this route"}  # type: ignore[arg-type]
    answer = await json_errors(make_mocked_request("GET", "/"), fine)
    assert isinstance(answer, web.Response) and answer.text == "ok"


# --- /docs ---------------------------------------------------------------------------------------------------------


def test_the_docs_page_lists_every_route_and_fetches_nothing_from_elsewhere() -> None:
    settings = load_settings()
    page = docs_page_bytes(settings).decode()
    listed = set(re.findall(r'<section class="op" id="[^"]*" data-method="(\w+)" data-path="([^"]+)"', page))
    assert listed == {(route.method, route.path) for route in all_routes(settings)}
    assert re.findall(r"https?://", page) == [], "no URL of any host: only this server's paths"
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=|@import|url\(", page), "no external asset of any kind"
    assert "innerHTML" not in page and "insertAdjacentHTML" not in page and "document.write" not in page
    script = re.search(r"<script>(.*)</script>", page, re.S)
    style = re.search(r"<style>(.*)</style>", page, re.S)
    assert script and style
    assert docs_page._hash(script.group(1)) in docs_page.CONTENT_SECURITY_POLICY
    assert docs_page._hash(style.group(1)) in docs_page.CONTENT_SECURITY_POLICY
    assert "connect-src 'self'" in docs_page.CONTENT_SECURITY_POLICY


def test_the_docs_page_escapes_what_the_document_says() -> None:
    document = {"info": {"title": "<b>t</b>"}, "paths": {"/x/{id}": {"get": {
        "operationId": "x", "summary": "<script>alert(1)</script>", "security": [{"apiKey": []}],
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"},
                        "description": '"><img src=x onerror=alert(1)>'}],
        "responses": {"200": {"description": "ok"}}}}}}
    page = docs_page.render(document).decode()
    assert "<script>alert(1)</script>" not in page and "<img" not in page and "<b>t</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'data-in="path" data-name="id"' in page and " required" in page and 'data-secured="1"' in page

