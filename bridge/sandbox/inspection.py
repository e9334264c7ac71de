"""Who may read the sandbox's inspection routes (every call with its full number, the TwiML with
its dynamic variables, the agent's conversations).

On the loopback anyone on the machine may, as before: that is the demo and the tests. A service
listening beyond the loopback asks for an API key of its own (``Authorization: Bearer <key>``,
as the API does), so the sandbox is not a directory of the people a campaign calls.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps

from aiohttp import web
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridge.api.auth import key_matches, presented_key
from bridge.api.errors import error_response
from bridge.app_keys import SESSIONMAKER, SETTINGS
from bridge.sandbox.delivery import Journal
from campaigns.api_key_store import find_key

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# True when the request may read the sandbox's records.
InspectionGuard = Callable[[web.Request], Awaitable[bool]]


def api_key_guard(
    api_keys: tuple[str, ...], sessionmaker: async_sessionmaker[AsyncSession]
) -> InspectionGuard:
    """Any live API key of the installation (CALLBRIDGE_API_KEYS or one created with `keys`)."""

    async def allowed(request: web.Request) -> bool:
        presented = presented_key(request)
        if presented is None:
            return False
        if key_matches(presented, api_keys):
            return True
        try:
            return await find_key(sessionmaker, presented) is not None
        except DBAPIError:
            return False  # a carrier started before the schema exists knows no stored key

    return allowed


def guarded(guard: InspectionGuard | None) -> Callable[[Handler], Handler]:
    """Wraps an inspection handler so it answers 401 unless ``guard`` lets the request in."""

    def wrap(handler: Handler) -> Handler:
        if guard is None:
            return handler

        @wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            if not await guard(request):
                response = error_response(
                    401,
                    "unauthorized",
                    "the sandbox's records need an API key here: send Authorization: Bearer <key>",
                )
                response.headers["WWW-Authenticate"] = 'Bearer realm="callbridge"'
                return response
            return await handler(request)

        return checked

    return wrap


def inspection_guard(app: web.Application) -> InspectionGuard | None:
    """The guard a service node puts on its mounted sandbox: none on the loopback."""
    settings = app[SETTINGS]
    if not settings.exposed_sandbox:
        return None
    return api_key_guard(settings.api_keys, app[SESSIONMAKER])


def journal_reply(request: web.Request, journal: Journal | None) -> web.Response:
    """The entries of ``journal`` after the request's ``?after=<seq>`` (all without it; none
    without a journal); 400 if ``after`` is not an integer."""
    try:
        after = int(request.query.get("after", "0"))
    except ValueError as exc:
        raise web.HTTPBadRequest(text='{"detail": "after must be an integer"}') from exc
    return web.json_response(journal.entries(after) if journal is not None else [])
