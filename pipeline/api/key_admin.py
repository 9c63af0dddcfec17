"""``/v1/keys``: an ``admin`` key manages its own tenant's keys (list, create, revoke).

What ``admin`` allows beyond ``read`` is exactly this, and only within the
key's tenant: another tenant's key id is "not found" (404), as is a key id
that does not exist. Tenants themselves are managed only from the command
line (``tickwire tenants add``), by whoever can reach the operational database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from pipeline.api.context import ApiContext
from pipeline.api.errors import not_found
from pipeline.api.keys import KEY_ID, SCOPES, KeyInfo, create_key, list_keys, revoke_key
from pipeline.api.params import Name
from pipeline.api.routes import Body, Call, Route
from pipeline.config import Settings


class CreateKeyRequest(msgspec.Struct, forbid_unknown_fields=True):
    scope: Literal["read", "admin"]


def _ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def _info(key: KeyInfo) -> dict[str, Any]:
    return {"key_id": key.key_id, "scope": key.scope, "created_at_ms": _ms(key.created_at),
            "revoked_at_ms": _ms(key.revoked_at)}


async def keys(ctx: ApiContext, call: Call) -> dict[str, Any]:
    async with ctx.using("postgres"):
        found = await list_keys(ctx.pool, call.tenant)
    return {"data": [_info(k) for k in found]}


async def create(ctx: ApiContext, call: Call) -> dict[str, Any]:
    request: CreateKeyRequest = call.body
    async with ctx.using("postgres"):
        issued = await create_key(ctx.pool, call.tenant, request.scope)
    return {"key_id": issued.key_id, "scope": issued.scope, "key": issued.key}


async def revoke(ctx: ApiContext, call: Call) -> dict[str, Any]:
    key_id = call.params["key_id"]
    async with ctx.using("postgres"):
        outcome = await revoke_key(ctx.pool, key_id, tenant=call.tenant)
    if outcome == "not found":
        raise not_found(f"no key {key_id} in this tenant")
    ctx.auth.forget(key_id)
    return {"key_id": key_id, "revoked": True}


_SCOPE = {"type": "string", "enum": list(SCOPES)}
_KEY_ID = {"type": "string", "pattern": "^[0-9a-f]{16}$"}

SCHEMAS: dict[str, dict[str, Any]] = {
    "ApiKey": {
        "type": "object", "additionalProperties": False, "required": ["key_id", "scope", "created_at_ms", "revoked_at_ms"],
        "properties": {"key_id": _KEY_ID, "scope": _SCOPE, "created_at_ms": {"type": "integer"},
                       "revoked_at_ms": {"type": ["integer", "null"]}},
    },
    "ApiKeys": {
        "type": "object", "additionalProperties": False, "required": ["data"],
        "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/ApiKey"}}},
    },
    "IssuedKey": {
        "type": "object", "additionalProperties": False, "required": ["key_id", "scope", "key"],
        "properties": {"key_id": _KEY_ID, "scope": _SCOPE,
                       "key": {"type": "string", "description": "The key: shown this once, store it safely."}},
    },
    "RevokedKey": {
        "type": "object", "additionalProperties": False, "required": ["key_id", "revoked"],
        "properties": {"key_id": _KEY_ID, "revoked": {"type": "boolean", "const": True}},
    },
}

_CREATE_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["scope"], "properties": {"scope": _SCOPE}}


def routes(settings: Settings) -> tuple[Route, ...]:
    return (
        Route("GET", "/v1/keys", "This tenant's API keys", "keys", keys, "ApiKeys", scope="admin",
              description="Every key of the tenant, revoked ones included; never a secret."),
        Route("POST", "/v1/keys", "Create an API key for this tenant", "keys", create, "IssuedKey", scope="admin",
              body=Body(CreateKeyRequest, _CREATE_SCHEMA), status=201, errors=(413,),
              description="The key is in the answer and nowhere else: only its salted hash is stored."),
        Route("DELETE", "/v1/keys/{key_id}", "Revoke one of this tenant's API keys", "keys", revoke, "RevokedKey",
              scope="admin", params=(Name("key_id", "The key id (the 16 hex digits after tw_).", KEY_ID, location="path"),),
              errors=(404,),
              description="Idempotent. Takes effect at once in this process and within the key cache's lifetime "
                          "(seconds) in other API processes."),
    )
