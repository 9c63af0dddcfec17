"""``GET /v1/ticks/stream`` and ``GET /v1/symbols`` on a real worker (pipeline/api/streams.py, pipeline/api/symbols.py).

The stream: the newest tick first, then only its changes, in order, as server-sent events; it ends with
``event: end`` when idle, when its key is revoked, and when the worker stops (which it never holds up); it is
capped per key, per tenant and per process (429 before any byte), frees its slot when the client goes away,
and shows nothing of another tenant. The symbol list: sorted, paged by name, one tenant's only.

The worker runs with small limits (2 streams per key, 3 per tenant, 2 s idle timeout); every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
import pytest

from pipeline.api.keys import revoke_key
from pipeline.api.migrations import open_pool
from pipeline.config import Settings
from pipeline.devstack.worker_process import WorkerProcess
from tests.api_support import ApiClient, issue_key, start_api_worker
from tests.console_support import LiveMarket, Walk, produce
from tests.waiting import wait_until

pytestmark = pytest.mark.stack

IDLE_S = 2.0
LIMITS: dict[str, object] = dict(api_streams_per_key=2, api_streams_per_tenant=3, api_stream_idle_timeout_s=IDLE_S)


class EventStream:
    """A ``/v1/ticks/stream`` request read event by event (blocking, with a read timeout)."""

    def __init__(self, base_url: str, key: str | None, timeout_s: float = 10.0, **params: str) -> None:
        address = urlsplit(base_url)
        self.connection = http.client.HTTPConnection(address.hostname, address.port, timeout=timeout_s)
        headers = {"Accept": "text/event-stream"} | ({"Authorization": f"Bearer {key}"} if key else {})
        self.connection.request("GET", "/v1/ticks/stream?" + urlencode(params), headers=headers)
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.headers = dict(self.response.getheaders())
        self.comments = 0

    def body(self) -> Any:
        return orjson.loads(self.response.read())

    def next(self) -> tuple[str, Any] | None:
        """The next event as (name, data); None when the server ended the stream."""
        name, data = "message", []
        while True:
            line = self.response.readline()
            if not line:
                return None
            text = line.decode().rstrip("\n")
            if text == "":
                if data:
                    return name, orjson.loads("\n".join(data))
                continue
            if text.startswith(":"):
                self.comments += 1
            elif text.startswith("event: "):
                name = text[len("event: "):]
            elif text.startswith("data: "):
                data.append(text[len("data: "):])

    def close(self) -> None:
        self.connection.close()


def tick(tenant: str, symbol: str, time_msc: int, bid: float, broker: str = "demo") -> dict[str, Any]:
    return dict(tenant=tenant, broker=broker, symbol=symbol, time_msc=time_msc, bid=bid, ask=round(bid + 0.0002, 5),
                volume=1, flags=6)


@pytest.fixture(scope="module")
def worker(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    worker = start_api_worker(stack_settings, tmp_path_factory.mktemp("stream-worker"), **LIMITS)
    yield worker
    worker.stop()


@pytest.fixture
def tenants(stack_settings: Settings) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return {"a": "sa" + suffix, "b": "sb" + suffix}


def latest(client: ApiClient, symbol: str, broker: str = "demo") -> list[dict[str, Any]]:
    return client.data("/v1/ticks/latest", symbol=symbol, broker=broker)


def test_the_stream_sends_the_newest_tick_then_each_change_in_order_and_ends_when_idle(
        worker: WorkerProcess, stack_settings: Settings, tenants: dict[str, str]) -> None:
    a = tenants["a"]
    key = issue_key(stack_settings, a).key
    client = ApiClient(worker.settings.api_url, key)
    now = int(time.time() * 1000)
    asyncio.run(produce(stack_settings, [tick(a, "EURUSD", now - 5_000, 1.08)]))
    wait_until(lambda: latest(client, "EURUSD"), timeout_s=60, what="the first tick in the hot key")

    stream = EventStream(worker.settings.api_url, key, symbol="EURUSD", broker="demo")
    try:
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert stream.headers["Cache-Control"] == "no-store"
        assert stream.next() == ("tick", latest(client, "EURUSD")[0])
        sent = []
        for i in range(1, 4):  # each change once it is in the hot key, so none is coalesced with the next
            sent.append(tick(a, "EURUSD", now - 5_000 + i * 100, round(1.08 + i * 0.0001, 5)))
            asyncio.run(produce(stack_settings, [sent[-1]]))
            name, data = stream.next() or ("", None)
            assert name == "tick" and (data["time_msc"], data["bid"]) == (sent[-1]["time_msc"], sent[-1]["bid"]), data
        began = time.monotonic()
        assert stream.next() == ("end", {"reason": "idle"}), "nothing but the end after the last change"
        assert IDLE_S - 0.5 <= time.monotonic() - began < IDLE_S + 10
        assert stream.next() is None, "the server closed the stream"
    finally:
        stream.close()


def test_a_series_without_a_tick_and_another_tenants_series_send_nothing_but_the_end(
        worker: WorkerProcess, stack_settings: Settings, tenants: dict[str, str]) -> None:
    a, b = tenants["a"], tenants["b"]
    key_a, key_b = issue_key(stack_settings, a).key, issue_key(stack_settings, b).key
    now = int(time.time() * 1000)
    asyncio.run(produce(stack_settings, [tick(a, "GBPUSD", now - 1_000, 1.26)]))
    wait_until(lambda: latest(ApiClient(worker.settings.api_url, key_a), "GBPUSD"), timeout_s=60, what="A's tick")
    for key, symbol in ((key_b, "GBPUSD"), (key_a, "NOSUCH")):
        stream = EventStream(worker.settings.api_url, key, symbol=symbol, broker="demo")
        try:
            assert stream.status == 200
            assert stream.next() == ("end", {"reason": "idle"})
        finally:
            stream.close()


def test_refused_streams_are_json_errors_before_any_event(worker: WorkerProcess, stack_settings: Settings,
                                                          tenants: dict[str, str]) -> None:
    key = issue_key(stack_settings, tenants["a"]).key
    for stream_key, params, status in ((None, {"symbol": "EURUSD", "broker": "demo"}, 401),
                                       ("tw_0000000000000000_" + "x" * 43, {"symbol": "EURUSD", "broker": "demo"}, 401),
                                       (key, {"symbol": "EURUSD"}, 400), (key, {"symbol": "a b", "broker": "demo"}, 400),
                                       (key, {"symbol": "EURUSD", "broker": "demo", "tenant": "x"}, 400)):
        stream = EventStream(worker.settings.api_url, stream_key, **params)
        try:
            assert stream.status == status, (params, stream.status)
            assert stream.headers["Content-Type"].startswith("application/json")
            assert "error" in stream.body()
        finally:
            stream.close()


def test_streams_are_capped_per_key_and_per_tenant_and_a_client_that_goes_away_frees_its_slot(
        worker: WorkerProcess, stack_settings: Settings, tenants: dict[str, str]) -> None:
    a, b = tenants["a"], tenants["b"]
    first, second, other = (issue_key(stack_settings, a).key, issue_key(stack_settings, a).key,
                            issue_key(stack_settings, b).key)
    url = worker.settings.api_url
    opened: list[EventStream] = []

    def open_stream(key: str) -> EventStream:
        stream = EventStream(url, key, symbol="EURUSD", broker="demo")
        opened.append(stream)
        return stream

    live = LiveMarket(stack_settings, Walk(3), a, "demo", symbols=("EURUSD",))  # A's streams never go idle
    live.start()
    try:
        wait_until(lambda: latest(ApiClient(url, first), "EURUSD"), timeout_s=60, what="A's live ticks")
        assert [open_stream(first).status for _ in range(2)] == [200, 200]
        refused = open_stream(first)
        assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
        assert "streams open" in refused.body()["error"]
        assert open_stream(second).status == 200, "another key of the tenant: its own per-key count"
        refused = open_stream(second)
        assert refused.status == 429 and "tenant" in refused.body()["error"], "3 per tenant"
        assert open_stream(other).status == 200, "another tenant is not affected"
        assert opened[0].next()[0] == "tick" and opened[1].next()[0] == "tick"

        opened[0].close()  # a client going away (no end event for it) frees its slot within an interval or so
        wait_until(lambda: (s := open_stream(first)).status == 200 or s.close(), timeout_s=10,
                   what="a slot of the key to be freed after its client went away")
        assert opened[1].next()[0] == "tick", "the key's other stream goes on"
    finally:
        live.stop()
        for stream in opened:
            stream.close()
    assert live.error is None


def test_a_revoked_keys_stream_ends(worker: WorkerProcess, stack_settings: Settings, tenants: dict[str, str]) -> None:
    a = tenants["a"]
    issued = issue_key(stack_settings, a)
    live = LiveMarket(stack_settings, Walk(5), a, "demo", symbols=("EURUSD",))  # the stream never goes idle
    live.start()
    try:
        wait_until(lambda: latest(ApiClient(worker.settings.api_url, issued.key), "EURUSD"), timeout_s=60,
                   what="A's live ticks")
        stream = EventStream(worker.settings.api_url, issued.key, timeout_s=30, symbol="EURUSD", broker="demo")
        assert stream.status == 200 and stream.next()[0] == "tick"

        async def revoke() -> None:
            pool = await open_pool(stack_settings.postgres_connection_dsn, max_size=1)
            try:
                assert await revoke_key(pool, issued.key_id) == "revoked"
            finally:
                await pool.close()

        asyncio.run(revoke())
        revoked_at = time.monotonic()
        events = []
        while (event := stream.next()) is not None and event[0] == "tick":
            events.append(event)
            assert time.monotonic() - revoked_at < 30, "the stream of a revoked key went on"
        assert event == ("end", {"reason": "unauthorized"}), event
        assert events, "ticks flowed until the revocation was seen"
        # the key cache's lifetime (5 s) plus one check interval (5 s), with a margin for a busy box
        assert time.monotonic() - revoked_at < 20
        stream.close()
    finally:
        live.stop()


def test_the_symbol_list_is_sorted_paged_by_name_and_one_tenants_only(
        worker: WorkerProcess, stack_settings: Settings, tenants: dict[str, str]) -> None:
    a, b = tenants["a"], tenants["b"]
    now = int(time.time() * 1000)
    series_a = [("AUDUSD", "demo"), ("EURUSD", "demo"), ("EURUSD", "zeta"), ("US.500", "demo"), ("XAU+", "demo")]
    ticks = [tick(a, symbol, now - 2_000, 1.5, broker) for symbol, broker in series_a]
    ticks += [tick(b, "BONLY", now - 2_000, 2.5, "bbroker"), tick(b, "EURUSD", now - 2_000, 2.5, "bbroker")]
    asyncio.run(produce(stack_settings, ticks))
    client_a = ApiClient(worker.settings.api_url, issue_key(stack_settings, a).key)
    client_b = ApiClient(worker.settings.api_url, issue_key(stack_settings, b).key)
    wait_until(lambda: len(client_a.data("/v1/symbols", limit=1000)) == len(series_a), timeout_s=60, what="A's series")

    listed = client_a.data("/v1/symbols", limit=1000)
    assert [(s["symbol"], s["broker"]) for s in listed] == series_a
    assert all(s["last_tick_ms"] == now - 2_000 for s in listed), listed
    pages = [client_a.get("/v1/symbols", limit=2)]
    while pages[-1].body["next_cursor"] is not None:
        pages.append(client_a.get("/v1/symbols", limit=2, cursor=pages[-1].body["next_cursor"]))
    assert [row for page in pages for row in page.body["data"]] == listed and len(pages) == 3
    assert pages[0].body["next_cursor"] == "EURUSD:demo"

    wait_until(lambda: len(client_b.data("/v1/symbols")) == 2, timeout_s=60, what="B's series")
    assert [(s["symbol"], s["broker"]) for s in client_b.data("/v1/symbols")] == [("BONLY", "bbroker"), ("EURUSD", "bbroker")]
    for cursor in ("A:demo", "BONLY:bbroker", "EURUSD:bbroker"):
        assert {s["broker"] for s in client_a.data("/v1/symbols", cursor=cursor)} <= {"demo", "zeta"}
    for bad in ("EURUSD", "EUR USD:demo", ":demo", "EURUSD:", "a:b:c"):
        answer = client_a.get("/v1/symbols", cursor=bad)
        assert answer.status == 400 and answer.body["parameter"] == "cursor", (bad, answer.body)
    assert client_a.get("/v1/symbols", tenant=b).status == 400


def test_open_streams_end_at_once_when_the_worker_stops(stack_settings: Settings, tmp_path, tenants: dict[str, str]) -> None:
    worker = start_api_worker(stack_settings, tmp_path, api_stream_idle_timeout_s=600)
    try:
        key = issue_key(stack_settings, tenants["a"]).key
        streams = [EventStream(worker.settings.api_url, key, timeout_s=30, symbol="EURUSD", broker="demo")
                   for _ in range(2)]
        assert [s.status for s in streams] == [200, 200]
        began = time.monotonic()
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGTERM)
        for stream in streams:
            event = stream.next()
            assert event in (("end", {"reason": "shutdown"}), None), event
            stream.close()
        wait_until(lambda: not worker.running(), timeout_s=worker.settings.shutdown_timeout_s + 10,
                   what="the worker to exit")
        # the web server did not wait for the streams (aiohttp would wait up to 60 s for open handlers)
        assert time.monotonic() - began < worker.settings.shutdown_timeout_s
    finally:
        worker.stop()


def test_the_console_and_its_files_are_served_with_a_strict_policy(worker: WorkerProcess) -> None:
    client = ApiClient(worker.settings.api_url)
    page = client.get("/console")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "unsafe" not in policy and page.headers["Cache-Control"] == "no-cache"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    for name, version in re_versions(page.body):
        asset = client.get(f"/console/{name}", v=version)
        assert asset.status == 200, name
        assert asset.headers["Cache-Control"] == "public, max-age=31536000, immutable", name
        assert asset.headers["Content-Security-Policy"] == policy
        assert client.get(f"/console/{name}").headers["Cache-Control"] == "no-cache"
    assert client.get("/console/..%2Fconsole_page.py").status == 404
    assert client.get("/console/nosuch.js").status == 404
    assert client.get("/console/console.js", v="not-hex").status == 400


def re_versions(page: str) -> list[tuple[str, str]]:
    found = re.findall(r'/console/([A-Za-z0-9._-]+)\?v=([0-9a-f]+)"', page)
    assert len(found) >= 4, found
    return found
