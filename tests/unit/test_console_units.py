"""The web console's files and the tick stream without a stack.

- The console's files are package data (an install carries them), are all served by name, and hold nothing the
  page's Content-Security-Policy would refuse or that would render data as HTML; the vendored Lightweight Charts
  is the version the README names, with its licence.
- The stream's slots are capped per key, per tenant and per process; its events are well framed; and on
  ``tickwire api``'s application (:func:`pipeline.api.server.make_app`) open streams end as soon as the server
  begins to stop, telling the client, instead of holding the shutdown up.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
import time
import tomllib
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import orjson
import pytest

from pipeline.api import console_page
from pipeline.api.auth import Principal
from pipeline.api.errors import ApiError, unauthorized
from pipeline.api.query_slots import TenantQuerySlots
from pipeline.api.rate_limit import KeyRateLimiter
from pipeline.api.server import make_app
from pipeline.api.server_limits import guarded_runner
from pipeline.api.stream_slots import StreamSlots
from pipeline.api.streams import event
from pipeline.config import load_settings
from tests.api_support import free_port

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = ROOT / "pipeline" / "api" / "console"


# --- the console's files --------------------------------------------------------------------------------------------


def test_every_file_of_the_console_is_package_data_and_served_by_name() -> None:
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["pipeline.api"]
    files = sorted(str(p.relative_to(CONSOLE.parent)) for p in CONSOLE.rglob("*") if p.is_file())
    uncovered = [f for f in files if not any(fnmatch.fnmatch(f, g) and f.count("/") == g.count("/") for g in globs)]
    assert not uncovered, f"files of the console an install would not carry: {uncovered}"
    served = {relative for relative, _ in console_page.ASSETS.values()} | {"index.html"}
    assert {f.removeprefix("console/") for f in files} == served, "every file is served, and only those"


def test_the_page_names_its_files_by_version_and_the_modules_import_only_served_files() -> None:
    page = console_page.page_bytes().decode()
    assert "@v:" not in page
    for name, version in re.findall(r'/console/([A-Za-z0-9._-]+)\?v=([0-9a-f]+)"', page):
        assert version == console_page.version(name), name
    for module in CONSOLE.glob("*.js"):
        for imported in re.findall(r'from "\./([^"]+)"', module.read_text()):
            assert imported in console_page.ASSETS, (module.name, imported)


def test_the_console_holds_nothing_its_policy_refuses_and_renders_no_data_as_html() -> None:
    policy = console_page.CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy and "unsafe" not in policy
    page = (CONSOLE / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", page), "an inline script"
    assert "<style" not in page and " style=" not in page and not re.search(r"\son[a-z]+=", page)
    # nothing is loaded from another host: every src and every stylesheet/icon href is this server's
    for url in re.findall(r'\ssrc="([^"]+)"', page) + re.findall(r'<link [^>]*href="([^"]+)"', page):
        assert url.startswith("/console/"), url
    for module in CONSOLE.glob("*.js"):
        source = module.read_text().replace('"http://www.w3.org/2000/svg"', "SVG_NAMESPACE")
        for refused in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                        "localStorage", "new EventSource", "http://", "https://", "style.cssText",
                        'setAttribute("style"'):
            assert refused not in source, (module.name, refused)
    assert "sessionStorage" in (CONSOLE / "api.js").read_text()
    # the chart library's attribution logo would insert a <style> element: it is off, and the page credits it
    assert "attributionLogo: false" in (CONSOLE / "chart.js").read_text()
    assert "TradingView" in page and "https://www.tradingview.com/" in page


def test_the_vendored_chart_library_is_the_named_version_with_its_licence() -> None:
    build = (CONSOLE / "vendor" / "lightweight-charts.standalone.production.js").read_text()
    assert f"TradingView Lightweight Charts™ v{console_page.LIGHTWEIGHT_CHARTS_VERSION}\n" in build[:300]
    assert "Apache License" in build[:300]
    assert "Apache License" in (CONSOLE / "vendor" / "LICENSE").read_text()[:200]
    assert f"Lightweight Charts™ {console_page.LIGHTWEIGHT_CHARTS_VERSION}" in (CONSOLE / "index.html").read_text()
    assert console_page.LIGHTWEIGHT_CHARTS_VERSION in (ROOT / "README.md").read_text()


# --- the stream ------------------------------------------------------------------------------------------------------


def test_stream_slots_are_capped_per_key_per_tenant_and_per_process() -> None:
    slots = StreamSlots(per_key=2, per_tenant=3, total=4)
    k1, k2, k3, other = (Principal("t", "read", "k1"), Principal("t", "read", "k2"), Principal("t", "read", "k3"),
                         Principal("u", "read", "k4"))
    slots.acquire(k1)
    slots.acquire(k1)
    with pytest.raises(ApiError) as refused:
        slots.acquire(k1)
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "1"
    slots.acquire(k2)
    with pytest.raises(ApiError, match="tenant"):
        slots.acquire(k3)
    slots.acquire(other)
    with pytest.raises(ApiError, match="this server"):
        slots.acquire(Principal("v", "read", "k5"))
    slots.release(k1)
    slots.acquire(k3)
    assert (slots.open, slots.of_key("k1"), slots.of_tenant("t"), slots.of_tenant("u")) == (4, 1, 3, 1)
    for principal in (k1, k2, k3, other):
        slots.release(principal)
    assert (slots.open, slots.of_key("k1"), slots.of_tenant("t")) == (0, 0, 0)
    slots.close()
    with pytest.raises(ApiError) as stopping:
        slots.acquire(k1)
    assert stopping.value.status == 503


def test_an_event_is_one_line_of_json_data() -> None:
    framed = event("tick", {"symbol": "EURUSD", "bid": 1.5, "note": "a\nb"})
    assert framed.startswith(b"event: tick\ndata: {") and framed.endswith(b"}\n\n") and framed.count(b"\n") == 3
    assert orjson.loads(framed.split(b"data: ")[1]) == {"symbol": "EURUSD", "bid": 1.5, "note": "a\nb"}


class _HotKeys:
    def __init__(self) -> None:
        self.time_msc = 1_000

    async def read(self, key: str, fields: tuple[str, ...]) -> list[bytes | None]:
        assert key == "tw:t1:tick:demo:EURUSD"
        return [str(self.time_msc).encode(), b"1.1", b"1.2", b"0", b"1", b"6"]


class _Auth:
    def known(self, header: str | None) -> Principal | None:
        return Principal("t1", "read", "k1") if header == "Bearer good" else None

    async def authenticate(self, header: str | None) -> Principal:
        raise unauthorized("invalid API key")


class _Context:
    """What the API's handlers use of an ApiContext, without stores."""

    def __init__(self) -> None:
        self.settings = load_settings(api_streams_per_key=1, api_stream_idle_timeout_s=600)
        self.ready = False
        self.streams = StreamSlots(1, 10, 10)
        self.hot_keys = _HotKeys()
        self.auth = _Auth()
        self.rates = KeyRateLimiter(100, 100)
        self.query_slots = TenantQuerySlots(1, 1)

    async def start(self) -> None:
        self.ready = True

    async def close(self) -> None:
        self.ready = False
        self.streams.close()

    @asynccontextmanager
    async def using(self, dependency: str) -> AsyncIterator[None]:
        yield


async def _events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Any]]:
    name = ""
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            yield name, orjson.loads(line[6:])


async def test_open_streams_end_as_soon_as_tickwire_api_begins_to_stop() -> None:
    ctx = _Context()
    runner = guarded_runner(make_app(ctx), ctx.settings)  # type: ignore[arg-type]  # the handlers use only the above
    await runner.setup()
    port = free_port()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}/v1/ticks/stream?symbol=EURUSD&broker=demo"
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer good"}) as session:
        stream = await session.get(url)
        assert stream.status == 200 and stream.headers["Content-Type"].startswith("text/event-stream")
        events = _events(stream)
        assert await anext(events) == ("tick", {"broker": "demo", "symbol": "EURUSD", "time_msc": 1000, "bid": 1.1,
                                                "ask": 1.2, "last": 0.0, "volume": 1, "flags": 6})
        ctx.hot_keys.time_msc = 2_000
        assert (await anext(events))[1]["time_msc"] == 2_000, "a change is sent"
        second = await session.get(url)
        assert second.status == 429 and "Retry-After" in second.headers, "one stream per key here"
        assert (await session.get(url, headers={"Authorization": "Bearer bad"})).status == 401

        began = time.monotonic()
        stopping = asyncio.create_task(runner.cleanup())  # aiohttp would wait up to 60 s for open handlers
        assert await asyncio.wait_for(anext(events), 5) == ("end", {"reason": "shutdown"})
        await asyncio.wait_for(stopping, 10)
        assert time.monotonic() - began < 5
    assert ctx.streams.open == 0, "the slot was released"
