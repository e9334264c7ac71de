"""Authentication, scopes and rate limiting for every /api and /v1 route.

A key is presented as ``Authorization: Bearer <key>`` or, as the ElevenLabs SDK sends it,
``xi-api-key: <key>``. Keys are the ones created with ``callbridge keys create`` (or the API),
stored hashed, plus any listed in CALLBRIDGE_API_KEYS (for bootstrapping; those are ``admin``).

Each route declares the scope it needs (bridge/api/openapi.py); a key whose scope does not include
it gets 403 ``insufficient_scope`` before the route reads its body. An address that presents too
many wrong keys is refused for a while (bridge/api/auth_throttle.py).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bridge.api.errors import error_response
from bridge.api.openapi import DOCUMENTED_PREFIXES, operation_of
from bridge.app_keys import AUTH_THROTTLE, RATE_LIMITER, SESSIONMAKER, SETTINGS
from campaigns.api_key_store import ADMIN, Rights, find_key, scope_includes

# request[IDENTITY]: the id of the key that made the request.
IDENTITY = web.RequestKey("api_key_id", str)


@dataclass(frozen=True)
class Caller:
    """The key that made a request: its id (a stored key's, or ``env:…`` for a bootstrap key)
    and what it may do."""

    id: str
    rights: Rights

    @property
    def scope(self) -> str:
        return self.rights.scope


CALLER = web.RequestKey("api_caller", Caller)


def caller_of(request: web.Request) -> Caller:
    return request[CALLER]


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


def required_scope(request: web.Request) -> str | None:
    """The scope the matched route needs; None for a public route or no route at all (a 404 or
    405 then follows, and tells nothing)."""
    operation = operation_of(request.match_info.route)
    if operation is not None:
        return operation.scope
    if request.match_info.http_exception is not None:
        return None
    # A route under /api without a declaration (tests/test_openapi.py fails on it): the most
    # guarded scope rather than none.
    return ADMIN


def _is_public(request: web.Request) -> bool:
    operation = operation_of(request.match_info.route)
    return bool(operation is not None and operation.public)


async def _caller(request: web.Request, presented: str) -> Caller | None:
    settings = request.app[SETTINGS]
    default = settings.rate_limit_per_minute
    if key_matches(presented, settings.api_keys):
        identity = "env:" + hashlib.sha256(presented.encode()).hexdigest()[:12]
        return Caller(identity, Rights(ADMIN, None, default))
    key = await find_key(request.app[SESSIONMAKER], presented)
    if key is None:
        return None
    return Caller(key.id, Rights(key.scope, key.rate_limit_per_minute, default))


@web.middleware
async def api_auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    if not request.path.startswith(DOCUMENTED_PREFIXES) or _is_public(request):
        return await handler(request)
    throttle = request.app[AUTH_THROTTLE]
    address = request.remote or ""
    wait = throttle.retry_after(address)
    if wait:
        # Before the key is even looked at: the answer to a guess must not depend on the guess.
        response = error_response(
            429,
            "too_many_failed_authentications",
            f"too many wrong API keys from this address; retry in {wait} s",
            path=request.path,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    presented = presented_key(request)
    if presented is None:
        # Nothing guessed: not counted as a failure.
        return _unauthorized(
            "missing API key: send Authorization: Bearer <key> or xi-api-key", request.path
        )
    caller = await _caller(request, presented)
    if caller is None:
        throttle.failed(address)
        return _unauthorized("invalid API key", request.path)
    request[CALLER] = caller
    request[IDENTITY] = caller.id
    decision = request.app[RATE_LIMITER].take(caller.id, caller.rights.effective_rate_limit)
    if not decision.allowed:
        response = error_response(
            429,
            "rate_limited",
            f"more than {decision.limit} requests per minute with this key; "
            f"retry in {decision.retry_after_seconds} s",
            path=request.path,
        )
        response.headers.update(decision.headers())
        return response
    needed = required_scope(request)
    if needed is not None and not scope_includes(caller.scope, needed):
        response = error_response(
            403,
            "insufficient_scope",
            f"this route needs a key of scope {needed!r}; this key's scope is {caller.scope!r}",
            {"required_scope": needed, "key_scope": caller.scope},
            path=request.path,
        )
        response.headers.update(decision.headers())
        return response
    response = await handler(request)
    if not response.prepared:
        response.headers.update(decision.headers())
    return response


def _unauthorized(message: str, path: str) -> web.Response:
    response = error_response(401, "unauthorized", message, path=path)
    response.headers["WWW-Authenticate"] = 'Bearer realm="callbridge"'
    return response
