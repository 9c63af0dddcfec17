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
        redis_ping(host, int(port), 0, timeout=1.0)
    except Exception:  # noqa: BLE001 - not answering (yet)
        return False
    return True


def test_health_reports_every_dependency_and_the_consumer_lag(worker) -> None:
    answer = ApiClient(worker.settings.api_url).get("/health")
    assert answer.status == 200, answer.body
    body = answer.body
    assert body["status"] == "ok" and body["ready"] is True
    assert list(body["dependencies"]) == list(DEPENDENCIES)
    for name, dependency in body["dependencies"].items():
        assert dependency["status"] == "up" and dependency["required"] is True, name
        assert 0 <= dependency["latency_ms"] < PROBE_TIMEOUT_S * 1000, name
    assert set(body["consumer_lag"]) == {"mt5.ticks.v1", "mt5.signals.v1"}
    assert all(isinstance(v, int) and v >= 0 for v in body["consumer_lag"].values())


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
