"""The pip-only local stack (tansu, Valkey, PostgreSQL 18 + pgvector, FalkorDB on loopback), a worker as a
child process, and the demo.

Each server runs as a detached background process with its pid file, log and
data under ``settings.state_dir`` (see :mod:`pipeline.devstack.layout`).
``tickwire stack up|down|status|start NAME|stop NAME`` is :mod:`pipeline.cli.stack`.

May import: :mod:`pipeline.ops`, :mod:`pipeline.ingest`, :mod:`pipeline.api` (keys), :mod:`pipeline.core`,
:mod:`pipeline.contracts`, :mod:`pipeline.config` (never :mod:`pipeline.runtime`: the worker runs as a child process).
"""

from pipeline.devstack.control import (
    ServerStatus,
    StackStartError,
    StartReport,
    StopReport,
    down,
    start_server,
    status,
    stop_server,
    up,
)
from pipeline.devstack.errors import StackConfigError, StackError
from pipeline.devstack.servers import SERVER_NAMES

__all__ = [
    "SERVER_NAMES",
    "ServerStatus",
    "StackConfigError",
    "StackError",
    "StackStartError",
    "StartReport",
    "StopReport",
    "down",
    "start_server",
    "status",
    "stop_server",
    "up",
]
