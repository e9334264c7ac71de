"""Authentication and rate limiting for every /api and /v1 route.

A key is presented as ``Authorization: Bearer <key>`` or, as the ElevenLabs SDK sends it,
``xi-api-key: <key>``. Keys are the ones created with ``callbridge keys create`` (or the API),
stored hashed, plus any listed in CALLBRIDGE_API_KEYS (for bootstrapping).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from aiohttp import web

from bridge.api.errors import error_response
from bridge.api.openapi import DOCUMENTED_PREFIXES
from bridge.keys import RATE_LIMITER, SESSIONMAKER, SETTINGS
from campaigns.apikeys import find_key

# request[IDENTITY]: the id of the key that made the request.
IDENTITY = web.RequestKey("api_key_id", str)


def key_matches(presented: str, keys: tuple[str, ...]) -> bool:
    # Compare against every key, whatever matches first, so timing says nothing about which.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(presented.encode(), key.encode())
    return matched


def presented_key(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    xi = request.headers.get("xi-api-key", "").strip()
    return xi or None


def _is_public(request: web.Request) -> bool:
    route = request.match_info.route
    operation = getattr(route.handler, "openapi", None)
    return bool(operation is not None and operation.public)


@web.middleware
async def api_auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    if not request.path.startswith(DOCUMENTED_PREFIXES) or _is_public(request):
        return await handler(request)
    settings = request.app[SETTINGS]
    presented = presented_key(request)
    if presented is None:
        return _unauthorized("missing API key: send Authorization: Bearer <key> or xi-api-key")
    identity: str | None = None
    per_minute = settings.rate_limit_per_minute
    if key_matches(presented, settings.api_keys):
        identity = "env:" + hashlib.sha256(presented.encode()).hexdigest()[:12]
    else:
        key = await find_key(request.app[SESSIONMAKER], presented)
        if key is not None:
            identity = key.id
            per_minute = key.rate_limit_per_minute or per_minute
    if identity is None:
        return _unauthorized("invalid API key")
    request[IDENTITY] = identity
    decision = request.app[RATE_LIMITER].take(identity, per_minute)
    if not decision.allowed:
        response = error_response(
            429,
            "rate_limited",
            f"more than {decision.limit} requests per minute with this key; "
            f"retry in {decision.retry_after_seconds} s",
        )
        response.headers.update(decision.headers())
        return response
    response = await handler(request)
    if not response.prepared:
        response.headers.update(decision.headers())
    return response


def _unauthorized(message: str) -> web.Response:
    response = error_response(401, "unauthorized", message)
    response.headers["WWW-Authenticate"] = 'Bearer realm="callbridge"'
    return response
