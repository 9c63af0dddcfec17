"""Read-only SQL against the analytics store, through the worker that owns it.

With chDB only one process can open the data directory, so while a worker
runs, ``tickwire sql`` asks it. The route is for the operator only: it needs
the token the worker writes to ``<state_dir>/worker.token`` (mode 0600) at
start, and queries run with ClickHouse ``readonly=1`` unless the operator
asks for write access (``tickwire sql --write``). It is not part of the
tenant-facing API (it can read every tenant).
"""

from __future__ import annotations

import hmac

import orjson
from faust.web import Request, Response, View

from pipeline.core.operator_token import SQL_ROUTE, issue_token
from pipeline.runtime.app import app, connections, settings, source

_TOKEN = issue_token(settings.state_dir)


@app.page(SQL_ROUTE)
class SqlView(View):
    """POST a query as the body; JSON lines back. 401 without the token, 400 on a bad query.

    ``?write=1`` runs it with write access (maintenance: DDL, OPTIMIZE, DETACH/ATTACH);
    it needs the same operator token.
    """

    async def post(self, request: Request) -> Response:
        supplied = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(supplied.encode(), _TOKEN.encode()):
            return self.json({"error": "operator token required"}, status=401)
        if not source.consuming:
            return self.json({"error": "worker is starting"}, status=503)
        query = (await request.read()).decode("utf-8", "replace").strip()
        if not query:
            return self.json({"error": "empty query"}, status=400)
        try:
            columns, rows = await connections.analytics.query(query, readonly=request.query.get("write") != "1")
        except Exception as exc:  # noqa: BLE001 - the store's message is the answer
            return self.json({"error": str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__}, status=400)
        body = b"\n".join(orjson.dumps(dict(zip(columns, row)), default=str) for row in rows)
        return self.bytes(body, content_type="application/x-ndjson")
