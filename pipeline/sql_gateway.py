"""Read-only SQL against the analytics store, through the worker that owns it.

With chDB only one process can open the data directory, so while a worker
runs, ``tickwire sql`` asks it. The route is for the operator only: it needs
the token the worker writes to ``<state_dir>/worker.token`` (mode 0600) at
start, and queries run with ClickHouse ``readonly=1``. It is not part of the
tenant-facing API (it can read every tenant).
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

import orjson

from pipeline.app import app, connections, settings

ROUTE = "/internal/sql"


def token_path(state_dir: Path) -> Path:
    return state_dir / "worker.token"


def _write_token() -> str:
    path = token_path(settings.state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    return token


_TOKEN = _write_token()


@app.page(ROUTE)
async def sql(web, request):  # type: ignore[no-untyped-def]
    supplied = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if not hmac.compare_digest(supplied.encode(), _TOKEN.encode()):
        return web.json({"error": "operator token required"}, status=401)
    query = (await request.read()).decode("utf-8", "replace").strip()
    if not query:
        return web.json({"error": "empty query"}, status=400)
    try:
        columns, rows = await connections.analytics.query(query, readonly=True)
    except Exception as exc:  # noqa: BLE001 - the store's message is the answer
        return web.json({"error": str(exc).splitlines()[0][:500]}, status=400)
    body = b"\n".join(orjson.dumps(dict(zip(columns, row)), default=str) for row in rows)
    return web.bytes(body, content_type="application/x-ndjson")
