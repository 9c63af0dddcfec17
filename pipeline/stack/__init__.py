"""The pip-only local stack: tansu, Valkey, PostgreSQL 18 + pgvector and FalkorDB on loopback.

Each server runs as a detached background process with its pid file, log and
data under ``settings.state_dir`` (see :mod:`pipeline.stack.layout`).
``tickwire stack up|down|status|start NAME|stop NAME`` is :mod:`pipeline.stack.cli`.
"""

from pipeline.stack.control import (
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
from pipeline.stack.errors import StackConfigError, StackError
from pipeline.stack.servers import SERVER_NAMES

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
