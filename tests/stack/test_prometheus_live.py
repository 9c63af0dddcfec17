"""A real Prometheus, with tickwire's rule files, scraping a real worker: every recording rule and every query of
the Grafana dashboard returns data.

The worker runs every stage on the local stack; ticks over a few minutes of event time (so 1m bars close and reach
the patterns and graph stages), signals (the signals stage, then enriched signals for the graph stage), one tick
under a key that is not its body's (a dead letter) and a few API requests give every metric something to say.
Prometheus (Debian's binary, tests/prometheus_support.py) scrapes it every second and evaluates the rules every
second. The test fails listing each query that had no data, saying which read metrics the worker does not export.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from pipeline.ingest.producer import MT5Producer, encode_tick
from tests.prometheus_support import RULE_FILES, panel_queries, prometheus_binary, rules, series_names
from tests.stack.test_ticks_pipeline import BASE_MS, make_ticks, produce
from tests.waiting import wait_until

pytestmark = pytest.mark.stack

STAGES = {"ingest", "signals", "patterns", "graph"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, timeout_s: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


class Prometheus:
    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url, self.process, self.log = url, process, log

    def query(self, expr: str) -> list[dict[str, Any]]:
        status, body = _get(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert status == 200, f"{expr}: {status} {body[:300]!r}"
        answer = json.loads(body)
        assert answer["status"] == "success", (expr, answer)
        return answer["data"]["result"]

    def get(self, path: str) -> Any:
        status, body = _get(self.url + path)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)["data"]


@pytest.fixture
def prometheus(tmp_path: Path, worker_factory) -> Iterator[tuple[Prometheus, Any]]:
    """A worker with every stage, and a Prometheus scraping it (job tickwire-worker, as in compose) every second."""
    binary = prometheus_binary("prometheus")
    worker = worker_factory(candle_timeframes="1m", lag_probe_interval_ms=500)
    target = worker.settings.api_url.removeprefix("http://")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in RULE_FILES],
        "scrape_configs": [{"job_name": "tickwire-worker", "static_configs": [{"targets": [target]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = _free_port()
    log = tmp_path / "prometheus.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=out, stderr=subprocess.STDOUT)
    server = Prometheus(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_until(lambda: process.poll() is None and _get(server.url + "/-/ready")[0] == 200, timeout_s=60,
                   what=f"prometheus ready (log: {log})")
        yield server, worker
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def _produce_signals(settings, tenant: str, count: int) -> None:
    async with MT5Producer(settings) as producer:
        for i in range(count):
            await producer.send_signal(id=f"sig-{i}", tenant=tenant, broker="demo", strategy="meanrev", symbol="EURUSD",
                                       time_msc=BASE_MS + 60_000 + i * 30_000, action="buy" if i % 2 else "sell",
                                       confidence=0.5, price=1.0, reason="monitoring test")


def _missing(prometheus: Prometheus, queries: dict[str, str]) -> list[str]:
    return [name for name, expr in queries.items() if not prometheus.query(expr)]


def _without_data(prometheus: Prometheus, queries: dict[str, str], missing: list[str]) -> str:
    """The queries that had no data, each with the metrics it reads that the worker does not export at all."""
    scraped = {r["metric"]["__name__"] for r in prometheus.query('{job="tickwire-worker", __name__=~"tickwire_.+"}')}
    lines = []
    for name in missing:
        names = series_names(queries[name])
        reads = {n for n in names if ":" not in n} | {
            n for rule in rules("record") if rule["record"] in names for n in series_names(rule["expr"])}
        absent = sorted(reads - scraped - {"up"})
        lines.append(f"  {name}" + (f"  (the worker exports no {', '.join(absent)})" if absent else ""))
    return f"{len(missing)} of {len(queries)} queries had no data:\n" + "\n".join(lines)


def test_every_recording_rule_and_dashboard_query_returns_data(stack_settings, prometheus, tenant):
    server, worker = prometheus
    # ticks of two symbols, one a second for 5 minutes of event time: 1m bars close and go to candles.v1
    ticks = make_ticks([tenant], ["EURUSD", "XAUUSD"], per_key=300)
    for tick in ticks:
        tick["time_msc"] = BASE_MS + (tick["time_msc"] - BASE_MS) * 100
    good = encode_tick(tenant=tenant, broker="demo", symbol="EURUSD", time_msc=BASE_MS, bid=1.0, ask=1.1)
    wrong_key = [(f"{tenant}x:demo:EURUSD".encode(), good)]  # the key is not the body's: key_mismatch
    asyncio.run(produce(stack_settings, ticks, wrong_key))
    asyncio.run(_produce_signals(stack_settings, tenant, 6))
    api = worker.settings.api_url
    for path in ("/health", "/openapi.json", "/v1/ticks?symbol=EURUSD"):  # 200, 200, 401 (no key)
        assert _get(api + path, timeout_s=10)[0] in (200, 401, 503), path

    # every stage consumed, and the wrong key was dead-lettered (as Prometheus sees it)
    def stages_seen() -> set[str]:
        return {r["metric"]["stage"] for r in server.query("stage:tickwire_records_consumed:rate1m")}

    wait_until(lambda: stages_seen() >= STAGES, timeout_s=120, interval_s=1, what="records consumed by every stage")
    wait_until(lambda: any((r["metric"]["stage"], r["metric"]["reason"]) == ("ingest", "key_mismatch")
                           for r in server.query("stage_reason:tickwire_dlq_records:rate5m")),
               timeout_s=60, interval_s=1, what="the dead letter counted")

    queries = {f"recording rule {rule['record']}": rule["record"] for rule in rules("record")}
    queries |= {f"panel {title!r}: {expr}": expr for title, expr in panel_queries()}
    missing: list[str] = []

    def all_have_data() -> bool:
        missing[:] = _missing(server, queries)
        return not missing

    try:
        wait_until(all_have_data, timeout_s=60, interval_s=1, what="data for every query")
    except AssertionError:
        pytest.fail(_without_data(server, queries, missing))

    for name, expr in queries.items():  # shown with -s / -rP: what each query returned
        print(f"{len(server.query(expr)):3d} series  {name}")

    # the rules evaluate without errors, and nothing fires on a healthy worker
    groups = server.get("/api/v1/rules")["groups"]
    assert {rule["name"] for group in groups for rule in group["rules"]} == {
        rule.get("record") or rule.get("alert") for rule in [*rules("record"), *rules("alert")]}
    assert all(rule["health"] == "ok" for group in groups for rule in group["rules"]), groups
    firing = [a for a in server.get("/api/v1/alerts")["alerts"] if a["state"] == "firing"]
    assert firing == [], firing
