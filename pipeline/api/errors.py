"""Error answers of the API: a status and a message for a person, never a stack trace.

Every error body is ``{"error": message}``, plus ``"parameter"`` naming the
query parameter, path parameter or body field at fault when there is one.
"""

from __future__ import annotations

import math
from typing import Any


class ApiError(Exception):
    """An answer other than success; raised anywhere below a handler, rendered by :mod:`pipeline.api.app`."""

    def __init__(self, status: int, message: str, *, parameter: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.parameter = parameter
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message}
        if self.parameter is not None:
            body["parameter"] = self.parameter
        return body


def bad_parameter(name: str, problem: str) -> ApiError:
    """400 naming the parameter: ``"<name>: <problem>"``."""
    return ApiError(400, f"{name}: {problem}", parameter=name)


def unauthorized(message: str) -> ApiError:
    """401 with the ``WWW-Authenticate`` challenge for bearer keys."""
    return ApiError(401, message, headers={"WWW-Authenticate": 'Bearer realm="tickwire"'})


def forbidden(message: str) -> ApiError:
    return ApiError(403, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


def unavailable(dependency: str) -> ApiError:
    """503: a store the request needs did not answer (its details go to the log, not to the client)."""
    return ApiError(503, f"{dependency} is unavailable, try again shortly", headers={"Retry-After": "1"})


def too_many_requests(message: str, retry_after_s: float) -> ApiError:
    """429 with ``Retry-After``: whole seconds, at least 1, never less than ``retry_after_s`` (so a client that waits
    that long is not refused again for the same reason)."""
    return ApiError(429, message, headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))})
