"""SQL against the analytics store, through the worker that owns it.

With chDB only one process can open the data directory, so while a worker
runs, ``tickwire sql`` asks it. The route is for the operator only: it needs
the token the worker writes to ``<state_dir>/worker.token`` (mode 0600) at
start. It is not part of the tenant-facing API (it can read every tenant).

A query runs on the read-only session pool (never a stage's session), with
ClickHouse ``readonly=2`` and ``max_execution_time`` =
``TICKWIRE_SQL_TIMEOUT_S``: a write is refused by the store and leaves no
trace on any session, and a query past its time is cancelled in the store.
``?write=1`` (``tickwire sql --write``, maintenance: DDL, OPTIMIZE,
DETACH/ATTACH) runs on a session opened for that statement and closed after.
"""

from __future__ import annotations

import hmac

import faust
import orjson
from faust.web import Request, Response, View

from pipeline.api.context import PipelineView
from pipeline.config import Settings
from pipeline.core.errors import describe
from pipeline.core.operator_token import SQL_ROUTE, issue_token
from pipeline.stores.connections import Connections


def serve_operator_sql(app: faust.App, settings: Settings, connections: Connections, status: PipelineView) -> None:
    """Register the operator SQL route on ``app`` and write a fresh operator token."""
    token = issue_token(settings.state_dir)
    analytics = connections.analytics

    class SqlView(View):
        """POST a query as the body; JSON lines back. 401 without the token, 400 on a bad query."""

        async def post(self, request: Request) -> Response:
            supplied = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if not hmac.compare_digest(supplied.encode(), token.encode()):
                return self.json({"error": "operator token required"}, status=401)
            if not status.consuming:
                return self.json({"error": "worker is starting"}, status=503)
            query = (await request.read()).decode("utf-8", "replace").strip()
            if not query:
                return self.json({"error": "empty query"}, status=400)
            try:
                if request.query.get("write") == "1":
                    columns, rows = await analytics.write_once(query)
                else:
                    columns, rows = await analytics.read(query, timeout_s=settings.sql_timeout_s)
            except Exception as exc:  # noqa: BLE001 - the store's message is the answer
                return self.json({"error": describe(exc, 500)}, status=400)
            body = b"\n".join(orjson.dumps(dict(zip(columns, row)), default=str) for row in rows)
            return self.bytes(body, content_type="application/x-ndjson")

    app.page(SQL_ROUTE)(SqlView)
