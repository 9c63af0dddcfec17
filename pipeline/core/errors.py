"""What kind of failure a store error is: transient, permanent, or unknown.

- **transient**: the store is unreachable, timed out, or said "try later"
  (connection refused or reset, timeouts, ClickHouse ``TOO_MANY_PARTS`` or
  ``TIMEOUT_EXCEEDED``, Redis ``LOADING``/``BUSY``/``TRYAGAIN``, PostgreSQL
  "cannot connect now", HTTP 429/5xx, a broker without a leader). The stage's
  circuit opens, the stage pauses and retries with capped, jittered backoff;
  nothing is dropped and nothing is committed past what was written.
- **permanent**: the store refused the *data* (a non-finite value, a
  constraint, a type error, a value or message too large, HTTP 4xx). Retrying
  cannot help: the records at fault are isolated and dead-lettered with the
  store's error, and the stage moves on.
- **unknown**: anything else. Retried ``TICKWIRE_UNKNOWN_ERROR_ATTEMPTS`` times
  as if transient, then handled as permanent for the smallest batch that still fails.

A store adapter that knows better raises :class:`TransientStoreError` or
:class:`RefusedData` itself.
"""

from __future__ import annotations

import asyncio
import re
from typing import Literal

ErrorKind = Literal["transient", "permanent", "unknown"]


class TransientStoreError(Exception):
    """The store cannot take the write now; the same write may succeed later."""


class RefusedData(Exception):
    """The store refused the data itself; the same write will fail again."""


# ClickHouse error names (the server and chDB put ``(NAME)`` at the end of the message).
_CLICKHOUSE_TRANSIENT = {
    "TOO_MANY_PARTS", "TIMEOUT_EXCEEDED", "TOO_MANY_SIMULTANEOUS_QUERIES", "MEMORY_LIMIT_EXCEEDED",
    "NETWORK_ERROR", "SOCKET_TIMEOUT", "ALL_CONNECTION_TRIES_FAILED", "UNKNOWN_TABLE", "UNKNOWN_DATABASE",
    "TABLE_IS_READ_ONLY", "READONLY", "ABORTED", "QUERY_WAS_CANCELLED", "CANNOT_ALLOCATE_MEMORY",
    "NOT_ENOUGH_SPACE", "KEEPER_EXCEPTION", "TABLE_IS_DROPPED", "SERVER_OVERLOADED",
}
_CLICKHOUSE_PERMANENT = {
    "VIOLATED_CONSTRAINT", "TYPE_MISMATCH", "CANNOT_PARSE_TEXT", "CANNOT_PARSE_NUMBER", "CANNOT_PARSE_DATETIME",
    "CANNOT_CONVERT_TYPE", "ARGUMENT_OUT_OF_BOUND", "TOO_LARGE_STRING_SIZE", "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
    "DECIMAL_OVERFLOW", "INCORRECT_DATA", "CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN", "ILLEGAL_TYPE_OF_ARGUMENT",
    "TOO_LARGE_ARRAY_SIZE", "BAD_ARGUMENTS", "NUMBER_OF_COLUMNS_DOESNT_MATCH",
}
_CLICKHOUSE_NAME = re.compile(r"\(([A-Z][A-Z0-9_]+)\)\s*(?:\(version [^)]*\))?\s*$")
_REDIS_TRANSIENT_PREFIXES = ("LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN", "READONLY", "OOM")
_HTTP_STATUS = re.compile(r"\b(?:status(?: code)?|code)[ :=]+([1-5][0-9][0-9])\b", re.IGNORECASE)


def _clickhouse_kind(exc: BaseException) -> ErrorKind | None:
    module = type(exc).__module__
    if not module.startswith("clickhouse_connect"):
        return None
    first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
    match = _CLICKHOUSE_NAME.search(first_line) or _CLICKHOUSE_NAME.search(str(exc))
    if match:
        name = match.group(1)
        if name in _CLICKHOUSE_TRANSIENT:
            return "transient"
        if name in _CLICKHOUSE_PERMANENT:
            return "permanent"
    if type(exc).__name__ in ("OperationalError", "StreamFailureError", "StreamClosedError"):
        return "transient"  # network: the HTTP client could not complete the call
    return "unknown"


def _asyncpg_kind(exc: BaseException) -> ErrorKind | None:
    module = type(exc).__module__
    if not module.startswith("asyncpg"):
        return None
    import asyncpg

    transient = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
                 asyncpg.TooManyConnectionsError, asyncpg.AdminShutdownError, asyncpg.SerializationError,
                 asyncpg.DeadlockDetectedError, asyncpg.QueryCanceledError, asyncpg.InsufficientResourcesError,
                 asyncpg.ReadOnlySQLTransactionError)
    if isinstance(exc, transient):
        return "transient"
    if isinstance(exc, (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)):
        return "permanent"
    return "unknown"


def _redis_kind(exc: BaseException) -> ErrorKind | None:
    import redis.exceptions as r

    if not isinstance(exc, r.RedisError):
        return None
    if isinstance(exc, (r.ConnectionError, r.TimeoutError, r.BusyLoadingError, r.TryAgainError, r.MasterDownError,
                        r.ReadOnlyError, r.ClusterDownError, r.OutOfMemoryError)):
        return "transient"
    if isinstance(exc, r.ResponseError) and str(exc).startswith(_REDIS_TRANSIENT_PREFIXES):
        return "transient"
    if isinstance(exc, r.DataError):
        return "permanent"
    return "unknown"


def _kafka_kind(exc: BaseException) -> ErrorKind | None:
    if not type(exc).__module__.startswith("aiokafka"):
        return None
    import aiokafka.errors as k

    if isinstance(exc, (k.MessageSizeTooLargeError, k.RecordTooLargeError, k.RecordListTooLargeError,
                        k.InvalidTopicError, k.UnsupportedForMessageFormatError)):
        return "permanent"
    if isinstance(exc, k.KafkaError) and getattr(exc, "retriable", False):
        return "transient"
    if isinstance(exc, (k.KafkaConnectionError, k.KafkaTimeoutError, k.RequestTimedOutError,
                        k.NotLeaderForPartitionError, k.LeaderNotAvailableError, k.NodeNotReadyError)):
        return "transient"
    return "unknown"


def _http_kind(exc: BaseException) -> ErrorKind | None:
    """Weaviate and ArangoDB clients: an HTTP status in the error, or a transport failure."""
    module = type(exc).__module__
    if not module.startswith(("weaviate", "arango", "httpx", "requests", "grpc", "urllib3")):
        return None
    status = getattr(exc, "status_code", None) or getattr(exc, "http_code", None)
    if status is None:
        match = _HTTP_STATUS.search(str(exc))
        status = int(match.group(1)) if match else None
    if isinstance(status, int):
        if status == 429 or status >= 500:
            return "transient"
        if 400 <= status < 500 and status not in (401, 403, 404, 408):
            return "permanent"
        return "transient"  # 401/403/404/408: configuration or availability, not the data
    name = type(exc).__name__
    if any(word in name for word in ("Connection", "Timeout", "Transport", "Network", "Unavailable", "Closed")):
        return "transient"
    return "unknown"


def classify(exc: BaseException) -> ErrorKind:
    """The kind of ``exc`` (see the module docstring)."""
    if isinstance(exc, TransientStoreError):
        return "transient"
    if isinstance(exc, RefusedData):
        return "permanent"
    for kind_of in (_clickhouse_kind, _asyncpg_kind, _redis_kind, _kafka_kind, _http_kind):
        kind = kind_of(exc)
        if kind is not None:
            return kind
    if isinstance(exc, (ConnectionError, TimeoutError, asyncio.TimeoutError)):
        return "transient"
    if isinstance(exc, OSError):
        return "transient"  # sockets, DNS, a full disk on the store's side
    if isinstance(exc, (ValueError, TypeError, OverflowError, ArithmeticError, UnicodeError)):
        return "permanent"  # the data cannot be encoded or computed: the same data fails again
    return "unknown"


def describe(exc: BaseException, limit: int = 1000) -> str:
    """The store's error in one line, for a dead letter (type and message, no traceback)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:limit] if text else type(exc).__name__
