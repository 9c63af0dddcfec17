"""``/health``: every dependency up with its latency and the consumer lag per topic; 503 while the cache
is down, 200 again once it is back."""

from __future__ import annotations

import time

import pytest

from pipeline import devstack as stack
from pipeline.api.health import DEPENDENCIES, PROBE_TIMEOUT_S
from pipeline.config import Settings
from pipeline.devstack.probes import redis_ping
from tests.api_support import ApiClient, start_api_worker
from tests.waiting import wait_until

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def worker(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory):
    worker = start_api_worker(stack_settings, tmp_path_factory.mktemp("health-worker"))
    yield worker
    worker.stop()


def cache_answers(settings: Settings) -> bool:
    host_port = settings.cache_url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    try:
        password = settings.cache_password.get_secret_value() if settings.cache_password else None
        redis_ping(host, int(port), 0, timeout=1.0, password=password)
    except Exception:  # noqa: BLE001 - not answering (yet)
        return False
    return True


def test_health_reports_every_dependency_and_every_stage(worker) -> None:
    client = ApiClient(worker.settings.api_url)
    answer = wait_until(lambda: (a := client.get("/health")).body["status"] == "ok" and a, timeout_s=30,
                        what="every stage running")
    assert answer.status == 200, answer.body
    body = answer.body
    assert body["ready"] is True
    assert list(body["dependencies"]) == list(DEPENDENCIES)
    for name, dependency in body["dependencies"].items():
        assert dependency["status"] == "up", name
        assert dependency["required"] is (name not in ("vector", "graph")), name
        assert 0 <= dependency["latency_ms"] < PROBE_TIMEOUT_S * 1000, name
    assert list(body["stages"]) == ["ingest", "signals", "patterns", "graph", "outcomes"]
    for name, stage in body["stages"].items():
        assert stage["state"] == "running" and stage["paused_by"] is None, name
        assert isinstance(stage["lag"]["records"], int) and stage["lag"]["records"] >= 0, name


def test_health_is_503_while_the_cache_is_stopped_and_200_when_it_returns(stack_settings: Settings, worker) -> None:
    client = ApiClient(worker.settings.api_url)
    assert client.get("/health").status == 200
    try:
        stack.stop_server(stack_settings, "cache")
        down = wait_until(lambda: (a := client.get("/health")).status == 503 and a, timeout_s=20,
                          what="/health to answer 503")
        began = time.monotonic()
        assert client.get("/health").status == 503
        assert time.monotonic() - began < PROBE_TIMEOUT_S + 1, "probes are bounded and run in parallel"
        assert down.body["status"] == "unavailable"
        assert down.body["dependencies"]["cache"]["status"] == "down"
        assert down.body["dependencies"]["cache"]["latency_ms"] is None and down.body["dependencies"]["cache"]["error"]
        assert all(d["status"] == "up" for name, d in down.body["dependencies"].items() if name != "cache")
    finally:
        stack.start_server(stack_settings, "cache")
        wait_until(lambda: cache_answers(stack_settings), timeout_s=30, what="the cache to answer again")
    back = wait_until(lambda: (a := client.get("/health")).status == 200 and a, timeout_s=30, what="/health to answer 200")
    assert back.body["dependencies"]["cache"]["status"] == "up"
