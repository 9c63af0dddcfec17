"""The OpenAPI 3.1 document, built from the routes themselves (parameters, bodies, responses),
so it describes what the server does: the same declarations parse the requests.

Success bodies are the resources' component schemas (strict: no undeclared
properties). Error answers share the ``Error`` schema. A route declares 400
when it takes parameters or a body, 401, 429 and 503 when it needs a key
(429: the key's rate limit or its tenant's concurrent queries, with
``Retry-After``; 503: a store it needs is unavailable, or the worker is still
starting), 403 when it needs the ``admin`` scope, and whatever else it lists
itself.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from pipeline.api.routes import Route

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["error"],
    "properties": {"error": {"type": "string", "description": "What went wrong, for a person."},
                   "parameter": {"type": "string", "description": "The parameter or body field at fault."}},
}

_ERROR_TEXT = {
    400: "A parameter or the body is invalid; `parameter` names it.",
    401: "No API key, or not a valid one (malformed, unknown, revoked).",
    403: "The key's scope does not allow this.",
    404: "Not found in this tenant.",
    413: "The body is too large.",
    429: "Too many requests with this key, or too many concurrent queries of its tenant; retry after Retry-After.",
    503: "A store this needs is unavailable, or the worker is starting; retry shortly.",
}

SECURITY_SCHEME = "apiKey"


_RETRY_AFTER = {"Retry-After": {"description": "Whole seconds to wait before retrying (at least 1).",
                                 "schema": {"type": "integer", "minimum": 1}}}


def error_response(status: int) -> dict[str, Any]:
    """The OpenAPI response object of an error answer with ``status`` (the ``Error`` schema)."""
    error: dict[str, Any] = {"description": _ERROR_TEXT[status],
                             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if status == 429:
        error["headers"] = _RETRY_AFTER
    return error


def responses(route: Route) -> dict[str, Any]:
    """The responses object of ``route`` (see the module docstring)."""
    if route.responses is not None:
        return route.responses
    found: dict[str, Any] = {str(route.status): {
        "description": route.summary,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{route.response}"}}}}}
    if route.cached:
        found[str(route.status)]["headers"] = {"X-Cache": {
            "description": "hit: a kept answer (still valid, see the operation's description); miss: computed now.",
            "schema": {"type": "string", "enum": ["hit", "miss"]}}}
    statuses = set(route.errors)
    if route.params or route.body:
        statuses.add(400)
    if route.scope is not None:
        statuses |= {401, 429, 503}
    if route.scope == "admin":
        statuses.add(403)
    found.update({str(status): error_response(status) for status in sorted(statuses)})
    return found


def _operation_id(route: Route) -> str:
    path = route.path.strip("/").replace("/", "_").replace("{", "").replace("}", "").replace(".", "_")
    return f"{route.method.lower()}_{path}"


def document(routes: tuple[Route, ...], schemas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The OpenAPI document of ``routes``; ``schemas`` are the component schemas they refer to."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation: dict[str, Any] = {"operationId": _operation_id(route), "summary": route.summary, "tags": [route.tag],
                                     "responses": responses(route)}
        if route.description:
            operation["description"] = route.description
        if route.params:
            operation["parameters"] = [p.openapi() for p in route.params]
        if route.body is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": route.body.schema}}}
        if route.scope is not None:
            operation["security"] = [{SECURITY_SCHEME: []}]
            operation["x-scope"] = route.scope
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "tickwire query API", "version": version("tickwire"),
                 "description": "What the tickwire pipeline stored, per tenant. Every /v1 request needs "
                                "`Authorization: Bearer <key>`; the key decides the tenant. Times are epoch "
                                "milliseconds (UTC). Lists answer `{\"data\": [...]}`; an unknown symbol, broker "
                                "or strategy gives an empty list, never 404."},
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA, **schemas},
            "securitySchemes": {SECURITY_SCHEME: {"type": "http", "scheme": "bearer",
                                                  "description": "An API key: tw_<key id>_<secret>."}},
        },
    }
