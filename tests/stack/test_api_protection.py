"""Fault containment in the query API: one abusive client or tenant must not slow or stop the others.

- Rate limit per API key (``pipeline/api/rate_limit.py``): 429 with Retry-After
  once a key's burst is spent, other keys unaffected, served again after
  Retry-After; counted in ``tickwire_api_request_seconds{status="429"}``.
- Concurrent store queries per tenant (``pipeline/api/query_slots.py``): a
  tenant's uncached requests beyond the cap wait for a slot, or get 429 when
  none frees in time; another tenant is answered meanwhile.
- Connections (``pipeline/api/server_limits.py``), on each server: the
  worker's (Faust's aiohttp driver; live), ``tickwire api``'s
  (:func:`pipeline.api.server.run`, in this process) and Faust's driver with
  :func:`~pipeline.api.server_limits.protect_faust_web` (in this process): a
  request head must arrive within the header timeout (slowloris), idle
  keep-alive connections close after the keep-alive timeout, and no answer or
  log line ever holds a header's value (malformed requests get a fixed JSON
  body).

Timings use small limits (header 1 s, keep-alive 4 s) and generous margins for
a busy 2-core box; every wait has a deadline (:func:`tests.waiting.wait_until`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web

from pipeline.api.errors import ApiError
from pipeline.api.query_slots import TenantQuerySlots
from pipeline.api.rate_limit import KeyRateLimiter
from pipeline.api.server import run as run_standalone
from pipeline.api.server_limits import GuardedAppRunner, protect_faust_web
from pipeline.config import Settings, load_settings
from pipeline.devstack.worker_process import WorkerProcess
from pipeline.ops.sql_client import worker_query
from tests.api_support import ApiClient, free_port, issue_key, start_api_worker
from tests.waiting import wait_until

HEADER_TIMEOUT_S = 1.0
KEEPALIVE_TIMEOUT_S = 4.0
BODY_TIMEOUT_S = 1.0
#: How late a timer may close a connection on a busy box and still pass (it may never close early).
MARGIN_S = 2.5
#: The worker's limits: a tiny burst; one store query per tenant at once, waited for 1 ms at most (an uncached
#: ClickHouse read takes longer, so a tenant's concurrent uncached requests beyond the first are refused).
LIMITS: dict[str, object] = dict(api_rate_per_s=2.0, api_rate_burst=3, api_tenant_queries=1, api_query_timeout_s=0.001,
                                 api_header_timeout_s=HEADER_TIMEOUT_S, api_keepalive_timeout_s=KEEPALIVE_TIMEOUT_S,
                                 api_body_timeout_s=BODY_TIMEOUT_S)
#: Looks like a key, is none; must never come back in an answer or reach a log.
SECRET = "tw_" + uuid.uuid4().hex[:16] + "_Zk9SECRETqW" + uuid.uuid4().hex
NO_CACHE = {"Cache-Control": "no-cache"}
#: A path every server here answers 200 at once (in the worker: the OpenAPI document).
PATH = "/openapi.json"
ANSWERED = f"GET {PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


# --- unit: the rate limiter and the query slots ---------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_spends_the_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    limiter = KeyRateLimiter(2.0, 3, clock=clock)
    assert [limiter.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("k") == pytest.approx(0.5)  # one token in 1 / 2 s; a refusal takes nothing
    assert limiter.take("other") == 0.0
    clock.now += 0.25
    with pytest.raises(ApiError) as refused:
        limiter.admit("k")
    assert refused.value.status == 429 and refused.value.headers == {"Retry-After": "1"}
    clock.now += 0.25
    limiter.admit("k")
    clock.now += 100
    assert [limiter.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]  # full again, never more than the burst
    assert limiter.take("k") > 0


def test_retry_after_is_whole_seconds_never_short() -> None:
    clock = FakeClock()
    limiter = KeyRateLimiter(0.4, 1, clock=clock)  # a token every 2.5 s
    limiter.admit("k")
    with pytest.raises(ApiError) as refused:
        limiter.admit("k")
    assert refused.value.headers["Retry-After"] == "3"
    clock.now += 2.5
    limiter.admit("k")


def test_idle_buckets_are_dropped_and_memory_is_bounded() -> None:
    clock = FakeClock()
    limiter = KeyRateLimiter(10.0, 5, max_keys=100, clock=clock)
    for i in range(50):
        limiter.take(f"k{i}")
    assert len(limiter) == 50
    clock.now += 0.5  # full again after 5 / 10 s: equivalent to no bucket
    limiter.take("new")
    assert len(limiter) == 1
    for i in range(1000):
        limiter.take(f"m{i}")
    assert len(limiter) == 100


def test_query_slots_wait_in_order_time_out_and_never_block_another_tenant() -> None:
    async def scenario() -> None:
        slots = TenantQuerySlots(1, 0.5)
        order: list[str] = []
        release = asyncio.Event()

        async def query(tenant: str, name: str) -> None:
            async with slots.slot(tenant):
                order.append(name)
                await release.wait()

        first = asyncio.create_task(query("a", "a1"))
        await asyncio.sleep(0)
        waiting = [asyncio.create_task(query("a", f"a{i}")) for i in (2, 3)]
        other = asyncio.create_task(query("b", "b1"))
        await asyncio.sleep(0.01)
        assert order == ["a1", "b1"]  # a's others wait; b has slots of its own
        assert slots.running("a") == 1 and slots.waiting("a") == 2
        release.set()
        await asyncio.gather(first, *waiting, other)
        assert order == ["a1", "b1", "a2", "a3"]  # in arrival order
        assert slots.running("a") == slots.waiting("a") == 0 and not slots._tenants

        release.clear()
        holder = asyncio.create_task(query("a", "holder"))
        await asyncio.sleep(0)
        began = time.monotonic()
        with pytest.raises(ApiError) as refused:
            await query("a", "late")
        assert 0.45 <= time.monotonic() - began < 2
        assert refused.value.status == 429 and refused.value.headers == {"Retry-After": "1"}
        assert "too many concurrent queries for this key's tenant" in refused.value.message
        gone = asyncio.create_task(query("a", "gone"))  # a waiter whose client went away leaves the queue
        after = asyncio.create_task(query("a", "after"))
        await asyncio.sleep(0.01)
        gone.cancel()
        release.set()
        await holder
        await after
        assert gone.cancelled() and order[-2:] == ["holder", "after"] and not slots._tenants

    asyncio.run(scenario())


# --- the worker's API, with small limits ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def worker(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    worker = start_api_worker(stack_settings, tmp_path_factory.mktemp("protected-worker"), **LIMITS)
    yield worker
    worker.stop()


def _tenant(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:10]


@pytest.mark.stack
def test_rate_limit_refuses_a_key_past_its_burst_and_no_other(worker: WorkerProcess, stack_settings: Settings) -> None:
    url = worker.settings.api_url
    greedy = ApiClient(url, issue_key(stack_settings, _tenant("ra")).key)
    other = ApiClient(url, issue_key(stack_settings, _tenant("rb")).key)
    statuses: list[int] = []
    for _ in range(20):  # no-cache requests are limited like any other
        answer = greedy.request("GET", "/v1/ticks", {"symbol": "EURUSD"}, headers=NO_CACHE)
        statuses.append(answer.status)
        if answer.status == 429:
            break
    refused_at = time.monotonic()
    assert statuses[-1] == 429 and statuses[:-1] == [200] * (len(statuses) - 1) and len(statuses) >= 4, statuses
    assert set(answer.body) == {"error"} and "rate limit" in answer.body["error"]
    retry_after = int(answer.headers["Retry-After"])
    assert retry_after >= 1

    assert other.get("/v1/ticks", symbol="EURUSD").status == 200  # another tenant's key is not affected
    wait_until(lambda: time.monotonic() >= refused_at + retry_after, timeout_s=retry_after + 1,
               what="the Retry-After time to pass", interval_s=0.05)
    assert greedy.get("/v1/ticks", symbol="EURUSD").status == 200

    metrics = ApiClient(url).get("/metrics").body
    counted = re.search(r'tickwire_api_request_seconds_count\{route="GET /v1/ticks",status="429"\} (\S+)', metrics)
    assert counted is not None and float(counted.group(1)) >= 1


@pytest.mark.stack
def test_a_tenants_concurrent_uncached_queries_are_capped_and_another_tenant_is_answered(
        worker: WorkerProcess, stack_settings: Settings) -> None:
    busy, calm = _tenant("qa"), _tenant("qb")
    busy_keys = [issue_key(stack_settings, busy).key for _ in range(6)]  # the cap is the tenant's, not a key's
    calm_key = issue_key(stack_settings, calm).key
    url = worker.settings.api_url + "/v1/ticks"

    async def flood() -> tuple[list[tuple[int, dict, str | None]], tuple[int, dict, str | None]]:
        async with aiohttp.ClientSession() as session:
            async def get(key: str, limit: int = 100) -> tuple[int, dict, str | None]:
                headers = {"Authorization": f"Bearer {key}", **NO_CACHE}
                async with session.get(url, params={"symbol": "EURUSD", "limit": limit}, headers=headers) as response:
                    return response.status, await response.json(), response.headers.get("Retry-After")

            for key in (*busy_keys, calm_key):  # one token each (burst 3): keys verified, so no database wait below
                assert (await get(key))[0] == 200
            # Another limit each: requests that differ only by symbol share one query (pipeline.api.batched_reads),
            # these cannot, so they are 12 store queries at once.
            answers = await asyncio.gather(*(get(key, 1 + 2 * n + i) for n, key in enumerate(busy_keys) for i in range(2)),
                                           get(calm_key))
            return answers[:-1], answers[-1]

    busy_answers, calm_answer = asyncio.run(flood())
    assert calm_answer[0] == 200, calm_answer
    statuses = [status for status, _, _ in busy_answers]
    assert set(statuses) <= {200, 429} and 200 in statuses and 429 in statuses, statuses
    for status, body, retry_after in busy_answers:
        if status == 429:
            assert retry_after == "1" and "too many concurrent queries for this key's tenant" in body["error"], body


@pytest.mark.stack
def test_read_sessions_run_queries_concurrently(worker: WorkerProcess) -> None:
    """Two slow operator reads run in the store at the same moment (the read pool's sessions are not one queue),
    and a third read on another session sees both running."""
    sleep_sql = "SELECT sleepEachRow(0.5) FROM numbers(16) SETTINGS max_block_size = 1"  # 8 s each
    sleepers = [threading.Thread(target=worker_query, args=(worker.settings, sleep_sql)) for _ in range(2)]
    for sleeper in sleepers:
        sleeper.start()
    try:
        def running() -> int:
            lines = worker_query(worker.settings, "SELECT count() AS n FROM system.processes "
                                                  "WHERE query LIKE '%sleepEachRow(0.5)%' AND query NOT LIKE '%system.processes%'")
            return int(orjson.loads(lines[0])["n"]) if lines else 0

        wait_until(lambda: running() == 2, timeout_s=7.0, what="both slow reads running at once")
    finally:
        for sleeper in sleepers:
            sleeper.join(timeout=30)


# --- connections: header and keep-alive timeouts, malformed requests, on every server ------------------------------


@dataclass
class Server:
    name: str
    port: int
    #: Every log line the server wrote so far.
    log_text: Callable[[], str]


@pytest.fixture(scope="module")
def log_records() -> Iterator[list[logging.LogRecord]]:
    """Log records of the servers running in this process (their event loops run in threads)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler, root = Keep(logging.DEBUG), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield records
    root.removeHandler(handler)
    root.setLevel(level)


def _formatted(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(record) for record in list(records))


async def _hello(request: web.Request) -> web.Response:
    return web.json_response({"data": []})


#: Set by the in-process servers' ``/slow`` route when it starts answering (it takes SLOW_S).
SLOW_STARTED = threading.Event()
SLOW_S = HEADER_TIMEOUT_S + 1.0


async def _slow(request: web.Request) -> web.Response:
    SLOW_STARTED.set()
    await asyncio.sleep(SLOW_S)  # the server's work, not a wait of the test
    return web.json_response({"data": []})


async def _echo(request: web.Request) -> web.Response:
    return web.json_response({"length": len(await request.read())})


def _add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(PATH, _hello)
    router.add_get("/slow", _slow)
    router.add_post("/echo", _echo)


@contextmanager
def _serving(start: Callable[[], Awaitable[object]], stop: Callable[[], Awaitable[object]] | None,
             port: int) -> Iterator[None]:
    """Run ``start()`` on an event loop in a thread until the port answers; at the end ``stop()``, then cancel it."""
    loop = asyncio.new_event_loop()
    task = loop.create_task(start())

    def serve() -> None:
        with suppress(asyncio.CancelledError):
            loop.run_until_complete(task)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    try:
        wait_until(listening, timeout_s=30, what="the server to listen")
        yield
    finally:
        if stop is not None:
            asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(task.cancel)
        thread.join(timeout=30)
        loop.close()


def _local_settings() -> Settings:
    return load_settings(api_host="127.0.0.1", api_port=free_port(), api_header_timeout_s=HEADER_TIMEOUT_S,
                         api_keepalive_timeout_s=KEEPALIVE_TIMEOUT_S)


@contextmanager
def _standalone(records: list[logging.LogRecord]) -> Iterator[Server]:
    """``tickwire api``'s serving function, :func:`pipeline.api.server.run`, with a trivial application."""
    settings = _local_settings()
    application = web.Application()
    _add_routes(application.router)
    with _serving(lambda: run_standalone(application, settings, handle_signals=False), None, settings.api_port):
        yield Server("standalone", settings.api_port, lambda: _formatted(records))


@contextmanager
def _faust_driver(records: list[logging.LogRecord]) -> Iterator[Server]:
    """Faust's aiohttp web driver (the worker's web server) after :func:`protect_faust_web`."""
    import faust

    settings = _local_settings()
    app = faust.App("protect-" + uuid.uuid4().hex[:6], broker="kafka://127.0.0.1:1", web_bind="127.0.0.1",
                    web_port=settings.api_port)
    driver = app.web
    _add_routes(driver.web_app.router)
    protect_faust_web(driver, settings)
    assert isinstance(driver._runner, GuardedAppRunner)

    async def start() -> None:
        await driver.start_server()
        await asyncio.Event().wait()

    with _serving(start, driver.stop_server, settings.api_port):
        yield Server("faust-driver", settings.api_port, lambda: _formatted(records))


@pytest.fixture(params=["standalone", "faust-driver"])
def local_server(request: pytest.FixtureRequest, log_records: list[logging.LogRecord]) -> Iterator[Server]:
    """The servers in this process, with the routes ``/slow`` and ``/echo`` too."""
    with (_standalone if request.param == "standalone" else _faust_driver)(log_records) as served:
        yield served


@pytest.fixture(params=["worker", "standalone", "faust-driver"])
def server(request: pytest.FixtureRequest, log_records: list[logging.LogRecord]) -> Iterator[Server]:
    if request.param == "standalone":
        with _standalone(log_records) as served:
            yield served
    elif request.param == "faust-driver":
        with _faust_driver(log_records) as served:
            yield served
    else:
        request.applymarker(pytest.mark.stack)
        worker: WorkerProcess = request.getfixturevalue("worker")
        assert worker.settings.api_header_timeout_s == HEADER_TIMEOUT_S
        yield Server("worker", worker.settings.api_port, lambda: Path(worker.log_file).read_text(errors="replace"))


def _connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.settimeout(0.05)
    return sock


def _closed(sock: socket.socket, trickle: bytes = b"") -> bool:
    """Whether the server closed ``sock`` (answers read and dropped); with ``trickle``, send it first, if still open."""
    try:
        if trickle:
            sock.sendall(trickle)
        while True:
            if not sock.recv(65536):
                return True
    except TimeoutError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True


def _seconds_until_closed(server: Server, sent: bytes, trickle: bytes = b"", *, deadline_s: float) -> float:
    """Seconds from connecting and sending ``sent`` until the server closes the connection (sending ``trickle``
    every 50 ms meanwhile)."""
    began = time.monotonic()
    sock = _connect(server)
    try:
        if sent:
            sock.sendall(sent)
        wait_until(lambda: _closed(sock, trickle), timeout_s=deadline_s, what="the server to close the connection",
                   interval_s=0.05)
        return time.monotonic() - began
    finally:
        sock.close()


def _exchange(sock: socket.socket, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw``; the answer's status, headers and body (the server closes after it, or keeps it alive)."""
    if raw:
        sock.sendall(raw)
    data = b""

    def answered() -> bool:
        nonlocal data
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            chunk = None
        if chunk is not None:
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length: *(\d+)", head)
        return chunk == b"" or (length is not None and len(body) >= int(length.group(1)))

    wait_until(answered, timeout_s=15, what="an answer", interval_s=0.01)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.mark.parametrize("sent, trickle", [
    (b"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ", b""),  # part of a head, then nothing
    (b"GET /health HTTP/1.1\r\n", b"X"),  # a byte every 50 ms: sending does not extend the time
    (b"", b""),  # nothing at all: the first head counts from the connection's start
], ids=["partial", "trickle", "silent"])
def test_a_request_head_must_arrive_within_the_header_timeout(server: Server, sent: bytes, trickle: bytes) -> None:
    """Closed about HEADER_TIMEOUT_S after the head began, with no answer; well before the keep-alive timeout."""
    closed_s = _seconds_until_closed(server, sent, trickle, deadline_s=HEADER_TIMEOUT_S + MARGIN_S)
    assert HEADER_TIMEOUT_S - 0.1 <= closed_s < HEADER_TIMEOUT_S + MARGIN_S < KEEPALIVE_TIMEOUT_S


def test_a_later_request_head_counts_from_its_first_byte(server: Server) -> None:
    sock = _connect(server)
    try:
        status, _, _ = _exchange(sock, ANSWERED)
        assert status == 200
        began = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        wait_until(lambda: _closed(sock), timeout_s=HEADER_TIMEOUT_S + MARGIN_S, what="the server to close it",
                   interval_s=0.05)
        assert HEADER_TIMEOUT_S - 0.1 <= time.monotonic() - began < HEADER_TIMEOUT_S + MARGIN_S
    finally:
        sock.close()


def test_a_head_begun_while_a_request_is_answered_is_timed_and_the_answer_completes(local_server: Server) -> None:
    sock = _connect(local_server)
    try:
        SLOW_STARTED.clear()
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(SLOW_STARTED.is_set, timeout_s=15, what="the slow request to be in progress", interval_s=0.01)
        began = time.monotonic()
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n")  # the next head, never completed
        received = b""

        def closed() -> bool:
            nonlocal received
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return False
            except ConnectionResetError:
                return True
            received += chunk
            return chunk == b""

        wait_until(closed, timeout_s=SLOW_S + MARGIN_S, what="the server to close the connection", interval_s=0.05)
        # the request in progress was answered in full, then the connection closed (not a keep-alive timeout later)
        assert received.startswith(b"HTTP/1.1 200 ") and received.endswith(b'{"data": []}'), received
        assert time.monotonic() - began < SLOW_S + MARGIN_S < SLOW_S + KEEPALIVE_TIMEOUT_S
    finally:
        sock.close()


def test_a_slow_body_is_not_timed_as_a_head(local_server: Server) -> None:
    """A body sent a byte every 50 ms for longer than the header timeout: answered, and the connection kept."""
    sock = _connect(local_server)
    try:
        length = int((HEADER_TIMEOUT_S + 1.0) / 0.05)
        sock.sendall(f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode())
        sent = 0

        def body_sent() -> bool:
            nonlocal sent
            sock.sendall(b"b")
            sent += 1
            return sent == length

        wait_until(body_sent, timeout_s=length * 0.05 + 30, what="the body to be sent", interval_s=0.05)
        status, _, body = _exchange(sock, b"")
        assert status == 200 and orjson.loads(body) == {"length": length}
        assert _exchange(sock, ANSWERED)[0] == 200  # still open
    finally:
        sock.close()


def test_an_idle_keep_alive_connection_closes_after_the_keep_alive_timeout(server: Server) -> None:
    sock = _connect(server)
    try:
        status, headers, _ = _exchange(sock, ANSWERED)
        assert status == 200 and headers.get("connection", "keep-alive").lower() == "keep-alive"
        began = time.monotonic()
        wait_until(lambda: _closed(sock), timeout_s=KEEPALIVE_TIMEOUT_S + MARGIN_S, what="the server to close it",
                   interval_s=0.05)
        # not closed by the header timeout: between requests only the keep-alive timeout counts
        assert KEEPALIVE_TIMEOUT_S - 0.2 <= time.monotonic() - began < KEEPALIVE_TIMEOUT_S + MARGIN_S
    finally:
        sock.close()


MALFORMED = {
    "control character in the value": f"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET}\x01\r\n\r\n",
    "NUL in the value": f"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET}\x00x\r\n\r\n",
    "DEL in the value": f"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET}\x7f\r\n\r\n",
    "a header line over 8190 bytes": f"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET}{'A' * 9000}\r\n\r\n",
    "space before the colon": f"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization : Bearer {SECRET}\r\n\r\n",
    "obsolete line folding": f"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\r\n {SECRET}\r\n\r\n",
    "the value in a header name": f"GET /health HTTP/1.1\r\nHost: x\r\nX-{SECRET}(): v\r\n\r\n",
    "too many headers": "GET /health HTTP/1.1\r\nHost: x\r\n" + "".join(f"X-{i}: {SECRET}\r\n" for i in range(200)) + "\r\n",
    "bad Content-Length": f"POST /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET}\r\nContent-Length: {SECRET}\r\n\r\n",
    "bad request line": f"GET /health HTTP/1.1 {SECRET}\r\nHost: x\r\n\r\n",
    "bad version": f"GET /health HTTP/1.{SECRET}\r\nHost: x\r\n\r\n",
    "bad method": f"G{SECRET} /health HTTP/1.1\r\nHost: x\r\n\r\n",
}


def test_malformed_requests_get_a_fixed_json_answer_that_echoes_nothing(server: Server) -> None:
    for case, raw in MALFORMED.items():
        sock = _connect(server)
        status, headers, body = _exchange(sock, raw.encode("latin-1"))
        sock.close()
        assert status == 400, (case, status, body)
        assert headers["content-type"].startswith("application/json"), (case, headers)
        assert orjson.loads(body) == {"error": "malformed HTTP request"}, (case, body)
        assert "SECRET" not in str(headers), case
    logged = server.log_text()
    assert "refused a malformed request" in logged  # the refusals are logged, without the request's bytes
    assert "Zk9SECRET" not in logged


@pytest.mark.stack
def test_invalid_keys_are_refused_without_echoing_them(worker: WorkerProcess) -> None:
    logged_before = Path(worker.log_file).stat().st_size
    client = ApiClient(worker.settings.api_url)
    for header in (f"Bearer {SECRET}", f"Bearer {SECRET[3:]}", f"Basic {SECRET}", SECRET, f"Bearer  {SECRET} x",
                   f"bearer {SECRET}"):
        answer = client.request("GET", "/v1/ticks", {"symbol": "EURUSD"}, headers={"Authorization": header})
        assert answer.status == 401, (header, answer.body)
        assert "Zk9SECRET" not in orjson.dumps(answer.body).decode() + str(answer.headers)
    with open(worker.log_file, "rb") as log:
        log.seek(logged_before)
        assert b"Zk9SECRET" not in log.read()


@pytest.mark.stack
def test_a_body_that_stalls_is_answered_408_within_the_body_timeout(worker: WorkerProcess, stack_settings: Settings) -> None:
    key = issue_key(stack_settings, _tenant("bt")).key
    head = (f"POST /v1/patterns/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: 500\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", worker.settings.api_port), timeout=10)
    sock.settimeout(0.05)
    try:
        began = time.monotonic()
        status, _, body = _exchange(sock, head + b'{"vector": [1')  # and then nothing more
        took = time.monotonic() - began
    finally:
        sock.close()
    assert status == 408 and "body" in orjson.loads(body)["error"]
    assert BODY_TIMEOUT_S <= took < BODY_TIMEOUT_S + MARGIN_S
