"""``GET /console``: the web console, and ``GET /console/{name}``: its files, served from the package.

The console (``pipeline/api/console/``, package data) is a page of plain ES
modules with no build step: a live candlestick chart per series (TradingView's
Lightweight Charts, vendored: ``console/vendor/``, no CDN), indicator overlays
and panes, signal markers with their outcomes, the newest tick from
``/v1/ticks/stream``, similar patterns, the correlation graph and a stage-health
strip. It calls the API of the server that serves it with the key typed into
it (kept in the browser's ``sessionStorage``, sent only as
``Authorization: Bearer``; never in a URL).

What is served, and how:

- Only the files of :data:`ASSETS`, by name (any other name: 404); each read
  from the package once.
- Every answer carries a strict ``Content-Security-Policy`` (:data:`CONTENT_SECURITY_POLICY`:
  scripts, styles, images and requests of this origin only, no inline script or
  style, no frames, forms or plugins), ``X-Content-Type-Options: nosniff`` and
  ``Referrer-Policy: no-referrer``. The console renders every value it gets as
  text (``textContent``), never as HTML.
- Caching: the page itself is ``no-cache`` (always revalidated); it names its
  files with ``?v=`` and the first 16 hex digits of their SHA-256, and a file
  asked with its current ``v`` is cached for a year (``immutable``); asked
  without (or with another), ``no-cache``.
- No key is needed to load the console (it holds no data); every ``/v1`` call
  it makes needs one.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pipeline.api.errors import bad_parameter, not_found
from pipeline.api.openapi import error_response
from pipeline.api.params import Param
from pipeline.api.routes import Call, Route

if TYPE_CHECKING:
    from pipeline.api.context import ApiContext

#: The version of Lightweight Charts in console/vendor/ (npm ``lightweight-charts``, Apache-2.0).
LIGHTWEIGHT_CHARTS_VERSION = "5.2.1"

#: URL name -> (file under pipeline/api/console/, content type)
ASSETS: dict[str, tuple[str, str]] = {
    "console.css": ("console.css", "text/css"),
    "console.js": ("console.js", "text/javascript"),
    "api.js": ("api.js", "text/javascript"),
    "chart.js": ("chart.js", "text/javascript"),
    "panels.js": ("panels.js", "text/javascript"),
    "favicon.svg": ("favicon.svg", "image/svg+xml"),
    "lightweight-charts.standalone.production.js": ("vendor/lightweight-charts.standalone.production.js",
                                                    "text/javascript"),
    "lightweight-charts-LICENSE.txt": ("vendor/LICENSE", "text/plain"),
}
_PAGE = "index.html"
_VERSION_TOKEN = re.compile(r"@v:([A-Za-z0-9._-]+)@")

#: Of this origin only: scripts (no inline or eval), styles (files only), images, requests; nothing else.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                           "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "Cross-Origin-Opener-Policy": "same-origin",
           "Cross-Origin-Resource-Policy": "same-origin"}
NO_CACHE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"


@functools.cache
def _read(relative: str) -> bytes:
    """A file of the console, from the installed package."""
    return resources.files("pipeline.api").joinpath("console", *relative.split("/")).read_bytes()


@functools.cache
def version(name: str) -> str:
    """The ``v`` of asset ``name``: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(_read(ASSETS[name][0])).hexdigest()[:16]


@functools.cache
def page_bytes() -> bytes:
    """The console's page, each ``@v:NAME@`` replaced by the version of asset NAME."""
    return _VERSION_TOKEN.sub(lambda match: version(match.group(1)), _read(_PAGE).decode()).encode()


@dataclass(frozen=True)
class AssetName(Param):
    """The name of one of the console's files (an unknown name is a 404)."""

    def parse(self, raw: str) -> str:
        if raw not in ASSETS:
            raise not_found("no such file of the console")
        return raw

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(ASSETS)}


@dataclass(frozen=True)
class AssetVersion(Param):
    """The ``v`` a page names a file with (hex digits; only the current one makes the answer cacheable)."""

    def parse(self, raw: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{1,64}", raw):
            raise bad_parameter(self.name, "must be hex digits")
        return raw

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": "^[0-9a-f]{1,64}$"}


async def page(ctx: ApiContext, call: Call) -> web.Response:
    return web.Response(body=page_bytes(), content_type="text/html", charset="utf-8",
                        headers={**HEADERS, "Cache-Control": NO_CACHE})


async def asset(ctx: ApiContext, call: Call) -> web.Response:
    name = call.params["name"]
    relative, content_type = ASSETS[name]
    cache = IMMUTABLE if call.params["v"] == version(name) else NO_CACHE
    return web.Response(body=_read(relative), content_type=content_type,
                        charset="utf-8" if content_type.startswith("text/") else None,
                        headers={**HEADERS, "Cache-Control": cache})


def routes() -> tuple[Route, ...]:
    content = {content_type: {"schema": {"type": "string"}} for _, content_type in ASSETS.values()}
    return (
        Route("GET", "/console", "The web console", "operations", page, None, scope=None, queries=False,
              responses={"200": {"description": "The console's page (HTML; its scripts and styles are files of "
                                                "/console/{name}, of this origin only).",
                                 "content": {"text/html": {"schema": {"type": "string"}}}}},
              description="Charts, signals, patterns, correlations and stage health of one tenant, from this API. "
                          "No key needed to load it; the key typed into it is kept in the browser's session storage "
                          "and sent only as the Authorization header of its requests to this server."),
        Route("GET", "/console/{name}", "A file of the web console", "operations", asset, None, scope=None,
              queries=False,
              params=(AssetName("name", "The file.", location="path"),
                      AssetVersion("v", "The version the console's page names the file with (cacheable when it is "
                                        "the current one).")),
              responses={"200": {"description": "The file.", "content": content},
                         "400": error_response(400), "404": error_response(404)},
              description="Only the console's own files (scripts, style, icon, and the vendored Lightweight Charts "
                          f"{LIGHTWEIGHT_CHARTS_VERSION} with its licence)."),
    )
