"""API keys over the API (the CLI has the same: `callbridge keys create|list|revoke`).

Managing keys needs an ``admin`` key, and a key never creates a key with a higher scope or rate
limit than its own (campaigns.api_key_store.granted)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bridge.api.auth import caller_of
from bridge.api.errors import ApiError
from bridge.api.openapi import Api, Response, body_of
from bridge.app_keys import SESSIONMAKER
from campaigns.api_key_store import (
    ADMIN,
    DEFAULT_SCOPE,
    SCOPES,
    GrantRefused,
    UnknownKey,
    create_key,
    list_keys,
    revoke_key,
)
from campaigns.api_tables import ApiKey
from campaigns.clock import iso_z

api = Api(
    "api-keys",
    "Keys for this API: stored hashed, shown once, revocable, each with a scope "
    "(read, write or admin).",
    scope=ADMIN,
)
routes = api.routes

KEY = api.schema(
    "ApiKey",
    {
        "type": "object",
        "required": ["id", "name", "prefix", "scope", "created_at"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "prefix": {"type": "string", "description": "The key's first characters"},
            "rate_limit_per_minute": {"type": ["integer", "null"]},
            "scope": {"type": "string", "enum": list(SCOPES)},
            "created_at": {"type": "string", "format": "date-time"},
            "last_used_at": {"type": ["string", "null"], "format": "date-time"},
            "revoked_at": {"type": ["string", "null"], "format": "date-time"},
            "key": {"type": "string", "description": "The key itself: only in the create answer"},
        },
    },
)
KEY_CREATE = api.schema(
    "ApiKeyCreate",
    {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "rate_limit_per_minute": {
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": 100000,
                "description": "At most the creating key's own limit; when absent, the creating "
                "key's own limit (or the service default if it has none)",
            },
            "scope": {
                "type": ["string", "null"],
                "enum": [*SCOPES, None],
                "description": f"At most the creating key's own scope; when absent, "
                f"`{DEFAULT_SCOPE}`",
            },
        },
    },
)


def key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "rate_limit_per_minute": key.rate_limit_per_minute,
        "scope": key.scope,
        "created_at": iso_z(key.created_at),
        "last_used_at": iso_z(key.last_used_at),
        "revoked_at": iso_z(key.revoked_at),
    }


@api.post(
    "/api/v1/api-keys",
    summary="Create a key (the answer is the only time the key is shown)",
    body=KEY_CREATE,
    responses={201: KEY},
)
async def create(request: web.Request) -> web.Response:
    body = body_of(request)
    try:
        created = await create_key(
            request.app[SESSIONMAKER],
            body["name"],
            rate_limit_per_minute=body.get("rate_limit_per_minute"),
            scope=body.get("scope"),
            by=caller_of(request).rights,
        )
    except GrantRefused as exc:
        raise ApiError(403, exc.code, str(exc)) from exc
    return web.json_response({**key_json(created.key), "key": created.secret}, status=201)


@api.get(
    "/api/v1/api-keys",
    summary="List keys (never the keys themselves)",
    responses={200: Response({"type": "array", "items": KEY})},
)
async def list_(request: web.Request) -> web.Response:
    return web.json_response([key_json(k) for k in await list_keys(request.app[SESSIONMAKER])])


@api.delete(
    "/api/v1/api-keys/{key_id}",
    summary="Revoke a key: it stops working at once",
    responses={200: KEY},
)
async def revoke(request: web.Request) -> web.Response:
    key_id = request.match_info["key_id"]
    try:
        key = await revoke_key(request.app[SESSIONMAKER], key_id)
    except UnknownKey as exc:
        raise ApiError(404, "not_found", f"no API key {key_id!r}") from exc
    return web.json_response(key_json(key))
