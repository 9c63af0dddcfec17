"""What an on-call engineer uses, on a real worker: the probes (/health/live, /health/ready), JSON errors for
unknown paths and wrong methods, the /docs page, the metrics of the alerts and dashboards, and a worker started with
TICKWIRE_LOG_FORMAT=json writing only JSON lines (and `tickwire api` likewise).

One worker (JSON logs) serves the module; the last test stops it to read its whole log."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline import devstack as stack
from pipeline.config import Settings
from pipeline.devstack.probes import redis_ping
from pipeline.devstack.worker_process import WorkerProcess, settings_env
from tests.api_support import ApiClient, free_port, produce_ticks, series_ticks, start_api_worker
from tests.waiting import wait_until

pytestmark = pytest.mark.stack

@pytest.fixture(scope="module")
def worker(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory):
    worker = start_api_worker(stack_settings, tmp_path_factory.mktemp("ops-worker"), log_format="json")
    yield worker
    worker.stop()


def metrics(client: ApiClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    answer = client.get("/metrics")
    assert answer.status == 200
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(answer.body) for sample in family.samples}


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def json_records(path: Path) -> list[dict[str, Any]]:
    """Every line of a log written in the JSON format, parsed (fails on a line that is not one JSON object)."""
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"{path.name} line {number} is not JSON: {line!r}")
        assert isinstance(record, dict) and {"timestamp", "level", "logger", "message"} <= set(record), line
        records.append(record)
    return records


def cache_answers(settings: Settings) -> bool:
    host, port = settings.cache_url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    try:
        redis_ping(host, int(port), 0, timeout=1.0,
                   password=settings.cache_password.get_secret_value() if settings.cache_password else None)
    except Exception:  # noqa: BLE001 - not answering (yet)
        return False
    return True


def test_a_running_worker_is_live_and_ready(worker: WorkerProcess) -> None:
    client = ApiClient(worker.settings.api_url)
    live = client.get("/health/live")
    assert live.status == 200 and live.body["status"] == "alive" and live.body["uptime_s"] > 0
    ready = wait_until(lambda: (a := client.get("/health/ready")).status == 200 and a, timeout_s=30, what="ready")
    assert ready.body == {"status": "ready", "reasons": [], "stages": ready.body["stages"]}
    assert list(ready.body["stages"]) == worker.settings.stage_names
    health = client.get("/health").body
    assert health["version"] and health["uptime_s"] >= live.body["uptime_s"]
    assert list(health["stages"]) == worker.settings.stage_names


def test_an_unknown_path_and_a_wrong_method_are_answered_in_json(worker: WorkerProcess) -> None:
    client = ApiClient(worker.settings.api_url)
    missing = client.get("/v1/no-such-route")
    assert missing.status == 404 and missing.headers["Content-Type"].startswith("application/json")
    assert set(missing.body) == {"error"}
    wrong = client.request("POST", "/health", raw_body=b"{}")
    assert wrong.status == 405 and wrong.headers["Content-Type"].startswith("application/json")
    assert wrong.body == {"error": "method POST is not allowed on this route"} and "GET" in wrong.headers["Allow"]
    assert client.request("DELETE", "/v1/ticks").status == 405


def test_docs_lists_every_route_of_the_document_and_fetches_nothing_elsewhere(worker: WorkerProcess) -> None:
    client = ApiClient(worker.settings.api_url)
    page = client.get("/docs")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "connect-src 'self'" in page.headers["Content-Security-Policy"]
    html = page.body
    assert re.findall(r"https?://", html) == [], "no URL of another host (nor of this one: paths only)"
    document = client.get("/openapi.json").body
    routes = {(method.upper(), path) for path, methods in document["paths"].items() for method in methods}
    listed = set(re.findall(r'<section class="op" id="[^"]*" data-method="(\w+)" data-path="([^"]+)"', html))
    assert listed == routes and ("GET", "/docs") in routes and ("GET", "/health/ready") in routes


def test_the_metrics_of_the_alerts_and_dashboards_appear_once_ticks_flow(stack_settings: Settings, worker: WorkerProcess,
                                                                         tenant: str) -> None:
    client = ApiClient(worker.settings.api_url)
    before = value(metrics(client), "tickwire_rows_written_total", stage="ingest", sink="clickhouse.ticks") or 0
    ticks = series_ticks(tenant, "demo", "EURUSD", [1.1, 1.2, 1.3])
    asyncio.run(produce_ticks(stack_settings, ticks))

    def written() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        samples = metrics(client)
        rows = value(samples, "tickwire_rows_written_total", stage="ingest", sink="clickhouse.ticks") or 0
        return samples if rows >= before + len(ticks) else None

    samples = wait_until(written, timeout_s=60, what="the ticks counted as rows written")
    assert (value(samples, "tickwire_rows_written_total", stage="ingest", sink="cache.hot_ticks") or 0) >= 1
    stamped = value(samples, "tickwire_last_checkpoint_timestamp_seconds", stage="ingest")
    assert stamped is not None and stamped > 1.7e9
    builds = [labels for name, labels in samples if name == "tickwire_build_info"]
    assert len(builds) == 1 and value(samples, "tickwire_build_info", **dict(builds[0])) == 1
    assert dict(builds[0])["version"] == client.get("/health").body["version"]

    def states(stage: str) -> dict[str, float | None]:
        current = metrics(client)
        return {state: value(current, "tickwire_stage_state", stage=stage, state=state)
                for state in ("starting", "running", "paused", "stalled")}

    for stage in worker.settings.stage_names:
        wait_until(lambda: states(stage) == {"starting": 0, "running": 1, "paused": 0, "stalled": 0}, timeout_s=30,
                   what=f"stage {stage} running in tickwire_stage_state")


def test_live_stays_200_and_ready_answers_503_while_the_cache_is_down(stack_settings: Settings, worker: WorkerProcess,
                                                                       tenant: str) -> None:
    client = ApiClient(worker.settings.api_url)
    wait_until(lambda: client.get("/health/ready").status == 200, timeout_s=30, what="ready before the outage")
    lives: list[int] = []

    def observe(check: Any) -> Any:
        lives.append(client.get("/health/live").status)
        return check()

    try:
        stack.stop_server(stack_settings, "cache")
        # ticks whose hot keys cannot be written: the ingest stage's cache circuit opens and the stage pauses
        asyncio.run(produce_ticks(stack_settings, series_ticks(tenant, "demo", "EURUSD", [1.1, 1.2])))
        down = wait_until(lambda: observe(lambda: (a := client.get("/health/ready")).status == 503 and a), timeout_s=20,
                          what="/health/ready to answer 503")
        assert down.body["status"] == "not_ready" and any(r.startswith("cache is down") for r in down.body["reasons"])
        wait_until(lambda: observe(lambda: client.get("/health").body["stages"]["ingest"]["state"] == "paused"),
                   timeout_s=30, what="the ingest stage to pause")
        assert client.get("/health/live").body["status"] == "alive"
    finally:
        stack.start_server(stack_settings, "cache")
        wait_until(lambda: cache_answers(stack_settings), timeout_s=30, what="the cache to answer again")
    assert lives and set(lives) == {200}, lives
    wait_until(lambda: client.get("/health/ready").status == 200, timeout_s=60, what="/health/ready to answer 200 again")

    def circuit_lines() -> list[dict[str, Any]] | None:
        found = [r for r in json_records(worker.log_file) if r["logger"] == "tickwire.circuit"]
        return found if any("recovered after" in r["message"] for r in found) else None

    lines = wait_until(circuit_lines, timeout_s=30, what="the circuit's recovery in the log")
    opened = [r for r in lines if "sink cache.hot_ticks unavailable" in r["message"]]
    assert opened and all(r["stage"] == "ingest" and r["sink"] == "cache.hot_ticks" for r in opened), opened
    assert all(r["stage"] == "ingest" and r["sink"] == "cache.hot_ticks" for r in lines if "recovered after" in r["message"])


def test_tickwire_api_answers_json_errors_and_logs_json_lines(stack_settings: Settings, tmp_path: Path) -> None:
    settings = stack_settings.model_copy(update={"clickhouse_dsn": f"chdb://{tmp_path / 'clickhouse'}",
                                                 "state_dir": tmp_path / "state", "api_port": free_port(),
                                                 "log_format": "json"})
    log_path = tmp_path / "api.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "pipeline", "api"], env={**os.environ, **settings_env(settings)},
                                  stdout=log, stderr=subprocess.STDOUT)
    client = ApiClient(settings.api_url)
    try:
        def ready() -> bool:
            try:
                return client.get("/health/ready").status == 200
            except OSError:
                return False

        wait_until(ready, timeout_s=60, what="tickwire api ready")
        assert client.get("/health/live").body["status"] == "alive"
        assert client.get("/health/ready").body["stages"] is None
        assert client.get("/nowhere").status == 404 and client.get("/nowhere").body.keys() == {"error"}
        wrong = client.request("PUT", "/metrics", raw_body=b"")
        assert wrong.status == 405 and set(wrong.body) == {"error"}
        assert client.get("/docs").status == 200
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
    assert code == 0, log_path.read_text()
    records = json_records(log_path)
    assert any(r["logger"] == "tickwire.api" and r["message"].startswith("query API ready") for r in records)


def test_a_json_worker_writes_only_json_lines_with_loggers_and_stages(worker: WorkerProcess) -> None:
    worker.stop()  # the last test of the module: its shutdown lines are in the log too
    records = json_records(worker.log_file)
    loggers = {r["logger"] for r in records}
    assert {"tickwire.source", "tickwire.api", "tickwire.connections"} <= loggers, loggers
    assert any(name.split(".")[0] in ("faust", "mode", "aiokafka") for name in loggers), "the libraries' lines too"
    stage_lines = [(r, match.group(1)) for r in records if (match := re.match(r"stage (\w+)", r["message"]))]
    assert {stage for _, stage in stage_lines} == set(worker.settings.stage_names)
    for record, stage in stage_lines:
        assert record.get("stage") == stage, record
    for stage in worker.settings.stage_names:
        assert any(r["message"] == f"stage {stage} stopped after a final checkpoint" for r in records), stage
