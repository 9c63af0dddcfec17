"""The web console (``GET /console``) in a real browser against a worker on the local stack.

Headless Chromium (Debian's ``chromium`` package; ``.ci/run`` installs it) is driven by Playwright's client with
``executable_path`` (Playwright's own browser downloads are never used), each test with a fresh user-data
directory. A simulated market (tests/console_support.py) gives tenant A an hour of four symbols with signals,
and keeps producing A's live ticks in a background thread while the tests run; tenant B has one series of its own.

What is checked, in the page itself: candles are drawn (pixels of the up and down colours on the chart's
canvases), the last price changes while ticks flow, an indicator overlay and an indicator pane appear and
disappear when toggled (pixels of their colours), the signal markers are drawn and hovering one shows the
signal with its outcome, B's key sees none of A's symbols, the console degrades when endpoints answer 404,
the key is kept in sessionStorage only (never localStorage, never in a URL), no request leaves the worker's
address, and the page raises no Content-Security-Policy violation or script error.

``TICKWIRE_CONSOLE_SCREENSHOT=docs/console.png`` also saves a screenshot of the console there.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import orjson
import pytest
from PIL import Image
from playwright.sync_api import BrowserContext, Page, Playwright, Route, sync_playwright

from pipeline.config import Settings
from pipeline.devstack.worker_process import WorkerProcess
from tests.api_support import ApiClient, issue_key, start_api_worker
from tests.console_support import CONSOLE_WORKER_SETTINGS, LiveMarket, Walk, history, produce, signals_in
from tests.waiting import wait_until

pytestmark = pytest.mark.stack

#: How Chromium is started: headless, no sandbox (root in CI), and nothing that calls home.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1500, "height": 1000}
#: Colours the console draws with (pipeline/api/console/chart.js), as RGB.
UP, DOWN = (0x26, 0xA6, 0x9A), (0xEF, 0x53, 0x50)
BUY, SELL = (0x1E, 0x40, 0xFF), (0xFF, 0x8F, 0x00)
SMA_20, RSI = (0xE6, 0xC2, 0x00), (0x00, 0x91, 0xEA)
#: A's series (broker demo) and B's (broker bbroker: a symbol A does not have).
A_SYMBOLS = ("EURUSD", "GBPUSD", "AUDUSD", "USDJPY")
TIMEOUT_MS = 30_000
_install_tried: dict[str, str] = {}


def chromium() -> str:
    """Path of Debian's chromium; installed with apt-get when missing and possible, else the test skips saying why."""
    path = shutil.which("chromium")
    if path is None and "why" not in _install_tried:
        why = ""
        if not shutil.which("apt-get") or os.geteuid() != 0:
            why = "chromium is not installed and apt-get cannot install it here (not root, or no apt-get)"
        else:
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"]
            done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, text=True, timeout=600)
                done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                why = f"apt-get install chromium failed: {(done.stderr or done.stdout).strip()[-300:]}"
        _install_tried["why"] = why
        path = shutil.which("chromium")
    if path is None:
        reason = _install_tried.get("why") or "chromium not found"
        print(f"SKIPPED: {reason}", file=sys.stderr)
        pytest.skip(reason)
    return path


@dataclass
class Market:
    worker: WorkerProcess
    key_a: str
    key_b: str
    signals: list[dict[str, Any]]
    live: LiveMarket

    @property
    def url(self) -> str:
        return self.worker.settings.api_url


@pytest.fixture(scope="module")
def market(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Market]:
    worker = start_api_worker(stack_settings, tmp_path_factory.mktemp("console-worker"), **CONSOLE_WORKER_SETTINGS)
    suffix = uuid.uuid4().hex[:8]
    a, b = "ca" + suffix, "cb" + suffix
    now = int(time.time() * 1000)
    walk = Walk(7)
    ticks = history(walk, a, "demo", now, 70)
    signals = signals_in(ticks, "EURUSD", a, "demo")
    ticks_b = history(Walk(11), b, "bbroker", now, 45, symbols=("USDJPY",))
    asyncio.run(produce(stack_settings, ticks + ticks_b, signals))
    live = LiveMarket(stack_settings, walk, a, "demo")
    live.start()
    market = Market(worker, issue_key(stack_settings, a).key, issue_key(stack_settings, b).key, signals, live)
    try:
        client = ApiClient(market.url, market.key_a)
        wait_until(lambda: len(client.data("/v1/candles", symbol="EURUSD", timeframe="1m", limit=1000)) >= 60,
                   timeout_s=120, what="A's EURUSD bars")
        wait_until(lambda: len(client.data("/v1/signals", symbol="EURUSD")) == len(signals), timeout_s=60,
                   what="A's signals")
        wait_until(lambda: client.data("/v1/strategies/performance", symbol="EURUSD"), timeout_s=120,
                   what="outcomes of A's signals")
        wait_until(lambda: ApiClient(market.url, market.key_b).data("/v1/candles", symbol="USDJPY", timeframe="1m"),
                   timeout_s=60, what="B's bars")
        yield market
    finally:
        live.stop()
        worker.stop()
    assert live.error is None, live.error


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    chromium()
    with sync_playwright() as driver:
        yield driver


@dataclass
class Browser:
    """One fresh Chromium (its own user-data directory) and a page, recording what the page asks and reports."""

    context: BrowserContext
    page: Page
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def browser(playwright: Playwright) -> Iterator[Browser]:
    profile = tempfile.mkdtemp(prefix="tickwire-chromium-")
    context = playwright.chromium.launch_persistent_context(
        profile, executable_path=chromium(), headless=True, args=CHROMIUM_ARGS, viewport=VIEWPORT)
    try:
        page = context.pages[0] if context.pages else context.new_page()
        recorded = Browser(context, page)
        context.on("request", lambda request: recorded.requests.append(request.url))
        page.on("console", lambda message: recorded.errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: recorded.errors.append(f"page error: {error}"))
        # Content-Security-Policy violations, as the page sees them (an init script runs whatever the policy)
        page.add_init_script("window.__violations = [];"
                             "document.addEventListener('securitypolicyviolation', (e) => "
                             "window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));")
        yield recorded
    finally:
        context.close()
        shutil.rmtree(profile, ignore_errors=True)


# --- helpers ------------------------------------------------------------------------------------------------------


def pixels(page: Page, colour: tuple[int, int, int], selector: str = "#chart", tolerance: int = 40) -> list[tuple[int, int]]:
    """Positions (x, y in the element) of the pixels of ``colour`` (within ``tolerance``, summed over R, G and B) in a
    screenshot of ``selector``."""
    image = np.asarray(Image.open(io.BytesIO(page.locator(selector).screenshot())).convert("RGB"), dtype=np.int32)
    close = np.abs(image - np.array(colour, dtype=np.int32)).sum(axis=2) <= tolerance
    return [(int(x), int(y)) for y, x in np.argwhere(close)]


def wait_pixels(page: Page, colour: tuple[int, int, int], at_least: int | None = None, at_most: int | None = None,
                what: str = "") -> int:
    def check() -> int | None:
        count = len(pixels(page, colour))
        ok = (at_least is None or count >= at_least) and (at_most is None or count <= at_most)
        return (count or -1) if ok else None

    return wait_until(check, timeout_s=20, what=what or f"pixels of {colour}", interval_s=0.3)


def sign_in(page: Page, url: str, key: str) -> None:
    page.goto(url + "/console")
    page.wait_for_selector("body[data-state='need-key']", timeout=TIMEOUT_MS)
    page.fill("#key-input", key)
    page.click("#key-use")
    page.wait_for_selector("body[data-state='ready']", timeout=TIMEOUT_MS)


def options(page: Page) -> list[str]:
    return [text.strip() for text in page.locator("#symbol option").all_inner_texts()]


def wait_js(page: Page, predicate: str, arg: Any = None) -> None:
    """Wait for ``predicate`` (a function's source: the page's policy refuses eval of a bare expression)."""
    page.wait_for_function(predicate, arg=arg, timeout=TIMEOUT_MS)


def assert_clean(browser: Browser, url: str, key: str, answered: tuple[int, ...] = ()) -> None:
    """Every request went to the worker only, the key to no URL, and the page reported no violation or error
    (but the browser's own note of a request ``answered`` with one of these statuses)."""
    origin = urlsplit(url)
    assert browser.requests, "no request recorded"
    for requested in browser.requests:
        parts = urlsplit(requested)
        assert (parts.scheme, parts.hostname, parts.port) == ("http", origin.hostname, origin.port), requested
        assert key not in requested and key.split("_")[1] not in requested, "the key in a URL"
    assert browser.page.evaluate("() => window.__violations") == []
    assert browser.page.evaluate("() => window.localStorage.length") == 0
    expected = tuple(f"status of {status}" for status in answered)
    assert not [e for e in browser.errors if not any(note in e for note in expected)], browser.errors


# --- tests --------------------------------------------------------------------------------------------------------


def test_the_console_draws_live_candles_overlays_panes_and_signal_markers(market: Market, browser: Browser) -> None:
    page = browser.page
    sign_in(page, market.url, market.key_a)
    assert page.evaluate("() => window.sessionStorage.getItem('tickwire.console.key')") == market.key_a
    assert page.input_value("#key-input") == "", "the key does not stay in the page"
    wait_until(lambda: sorted(options(page)) == sorted(f"{s} · demo" for s in A_SYMBOLS), timeout_s=20,
               what="A's four series in the symbol list")
    page.select_option("#symbol", label="EURUSD · demo")
    wait_js(page, "() => Number(document.querySelector('#chart').dataset.bars) >= 60")

    # candles: the chart's canvases hold bars of both colours
    wait_pixels(page, UP, at_least=300, what="up candles drawn")
    wait_pixels(page, DOWN, at_least=300, what="down candles drawn")

    # the newest tick, live: the last price changes while ticks flow (twice)
    for _ in range(2):
        shown = page.inner_text("#last-price")
        wait_js(page, "(before) => { const t = document.querySelector('#last-price').textContent;"
                      " return t !== before && t !== '–'; }", shown)
    assert page.inner_text("#stream-state") == "live"

    # an overlay on the price pane appears and disappears
    assert len(pixels(page, SMA_20)) < 20
    page.check("input[data-overlay='sma_20']")
    wait_pixels(page, SMA_20, at_least=150, what="the SMA 20 line drawn")
    page.uncheck("input[data-overlay='sma_20']")
    wait_pixels(page, SMA_20, at_most=20, what="the SMA 20 line gone")
    # and a pane (RSI) under it
    assert len(pixels(page, RSI)) < 20
    page.check("input[data-pane='rsi']")
    wait_pixels(page, RSI, at_least=150, what="the RSI pane drawn")
    page.uncheck("input[data-pane='rsi']")
    wait_pixels(page, RSI, at_most=20, what="the RSI pane gone")

    # signal markers: every buy, sell and close of the bars shown, drawn in their colours, listed in the table
    wait_js(page, "(n) => Number(document.querySelector('#chart').dataset.markers) === n", len(market.signals))
    wait_pixels(page, BUY, at_least=40, what="buy markers drawn")
    wait_pixels(page, SELL, at_least=40, what="sell markers drawn")
    assert page.locator("#signals tbody tr").count() == len(market.signals)
    # hovering a buy marker shows the signal and its outcome
    box = page.locator("#chart").bounding_box()
    assert box is not None
    buys = sorted(pixels(page, BUY))
    x, y = buys[len(buys) // 2]
    page.mouse.move(box["x"] + x, box["y"] + y)
    page.wait_for_selector("#tooltip:not([hidden])", timeout=TIMEOUT_MS)
    tip = page.inner_text("#tooltip")
    assert "BUY" in tip and "outcome" in tip and "tp first in" in tip, tip
    assert page.locator("#signals tbody tr.highlight").count() >= 1

    # the side panels and the health strip have the tenant's data
    wait_js(page, "() => document.querySelectorAll('#patterns tbody tr').length > 0")
    wait_js(page, "() => document.querySelectorAll('#graph g.node').length > 0")
    assert page.locator("#graph g.node").count() <= len(A_SYMBOLS) - 1
    wait_js(page, "() => document.querySelector('#health [data-stage=\"ingest\"]') !== null")
    assert "ingest running" in page.inner_text("#health [data-stage='ingest']")
    assert page.locator("#performance tbody tr").count() >= 1

    screenshot = os.environ.get("TICKWIRE_CONSOLE_SCREENSHOT")
    if screenshot:
        for selector in ("input[data-overlay='ema_20']", "input[data-overlay='bb']", "input[data-pane='rsi']",
                         "input[data-pane='macd']"):
            page.check(selector)
        wait_pixels(page, RSI, at_least=150)
        wait_js(page, "() => document.querySelector('#health [data-stage=\"ingest\"]').textContent.includes('/s')")
        x, y = sorted(pixels(page, BUY))[-1]
        page.mouse.move(box["x"] + x, box["y"] + y)
        page.wait_for_selector("#tooltip:not([hidden])", timeout=TIMEOUT_MS)
        page.screenshot(path=screenshot, full_page=True)

    # forgetting the key clears it from the tab
    page.click("#key-forget")
    page.wait_for_selector("body[data-state='need-key']", timeout=TIMEOUT_MS)
    assert page.evaluate("() => window.sessionStorage.length") == 0
    assert_clean(browser, market.url, market.key_a)
    assert any("/v1/ticks/stream" in r for r in browser.requests)


def test_another_tenants_key_sees_none_of_the_first_tenants_symbols(market: Market, browser: Browser) -> None:
    page = browser.page
    sign_in(page, market.url, market.key_b)
    wait_until(lambda: options(page) == ["USDJPY · bbroker"], timeout_s=20, what="B's one series")
    wait_js(page, "() => Number(document.querySelector('#chart').dataset.bars) >= 30")
    wait_js(page, "() => document.querySelector('#last-price').textContent !== '–'")
    wait_js(page, "() => document.querySelector('#patterns-query').textContent !== ''")
    text = page.inner_text("body")
    for symbol in ("EURUSD", "GBPUSD", "AUDUSD"):
        assert symbol not in text, symbol
    assert "· demo" not in text
    asked = [parse_qs(urlsplit(r).query) for r in browser.requests]
    assert all(q.get("symbol", ["USDJPY"]) == ["USDJPY"] for q in asked), asked
    assert all(q.get("broker", ["bbroker"]) == ["bbroker"] for q in asked), asked
    assert_clean(browser, market.url, market.key_b)


def test_a_refused_key_is_forgotten_and_asked_again(market: Market, browser: Browser) -> None:
    page = browser.page
    page.goto(market.url + "/console")
    page.wait_for_selector("body[data-state='need-key']", timeout=TIMEOUT_MS)
    page.fill("#key-input", "tw_0000000000000000_" + "x" * 43)
    page.click("#key-use")
    wait_js(page, "() => document.querySelector('#status').classList.contains('error')")
    assert page.evaluate("() => window.sessionStorage.length") == 0
    assert "refused" in page.inner_text("#status")
    assert page.locator("#main").is_hidden()


def test_the_console_degrades_when_endpoints_answer_404(market: Market, browser: Browser) -> None:
    """Against a server without the stream, the performance or the indicators endpoints (older, or not deployed):
    the panel goes, the outcome says n/a, overlays say so, and the last price is polled instead."""
    page = browser.page
    missing = {"/v1/ticks/stream", "/v1/strategies/performance", "/v1/indicators"}

    def not_there(route: Route) -> None:
        if urlsplit(route.request.url).path in missing:
            route.fulfill(status=404, content_type="application/json",
                          body=orjson.dumps({"error": "no such route (the routes: /openapi.json, or /docs)"}))
        elif urlsplit(route.request.url).path == "/v1/candles":  # bars of a server without indicators
            answer = route.fetch()
            body = orjson.loads(answer.body())
            for bar in body["data"]:
                del bar["indicators"]
            route.fulfill(response=answer, body=orjson.dumps(body))
        else:
            route.continue_()

    page.route("**/v1/**", not_there)
    sign_in(page, market.url, market.key_a)
    page.select_option("#symbol", label="EURUSD · demo")
    wait_js(page, "() => Number(document.querySelector('#chart').dataset.bars) >= 60")
    wait_pixels(page, UP, at_least=300, what="up candles drawn")
    wait_js(page, "() => document.querySelector('#stream-state').textContent === 'polling'")
    shown = page.inner_text("#last-price")
    wait_js(page, "(before) => document.querySelector('#last-price').textContent !== before", shown)
    wait_js(page, "() => document.querySelector('#performance-panel').hidden")
    wait_js(page, "(n) => document.querySelectorAll('#signals tbody tr').length === n", len(market.signals))
    outcomes = page.locator("#signals tbody tr td:nth-child(5)").all_inner_texts()
    assert set(outcomes) == {"n/a"}, outcomes
    assert page.locator("input[data-overlay]").count() == 0
    assert "n/a" in page.inner_text("#overlays")
    assert page.locator("input[data-pane]").count() == 0
    wait_js(page, "(n) => Number(document.querySelector('#chart').dataset.markers) === n", len(market.signals))
    assert_clean(browser, market.url, market.key_a, answered=(404,))
