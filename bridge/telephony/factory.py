"""The one factory of the telephony edge: the agent connections its packages register, and the
dialer chain built from them once, shared by the dispatcher, the webhooks and the API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from aiohttp import web

from bridge.app_keys import CONNECTIONS, DIALER, ELEVENLABS, SESSIONMAKER, SETTINGS
from bridge.ops.setup import metered_dialer
from bridge.settings import Settings
from bridge.telephony import elevenlabs, twilio
from bridge.telephony.elevenlabs.post_call import conversation_known
from bridge.telephony.port import Connection, DialerParts
from bridge.telephony.routing import DialerRouter
from bridge.telephony.twilio.dialer import TwilioDialer
from campaigns.lifecycle import AgentConnections

# The telephony packages, each with its connections (CONNECTIONS) and its set-up hook (setup:
# the routes its provider's requests come in on, and their validators); a new package is added
# here and nowhere else.
PACKAGES = (twilio, elevenlabs)


def registered() -> dict[str, Connection]:
    connections: dict[str, Connection] = {}
    for package in PACKAGES:
        for connection in package.CONNECTIONS:
            if connection.name in connections:
                raise ValueError(f"agent connection {connection.name} registered twice")
            connections[connection.name] = connection
    return connections


def agent_connections(app: web.Application) -> AgentConnections:
    """What the domain checks a campaign's agent_connection against."""
    return {name: connection.needs for name, connection in app[CONNECTIONS].items()}


def sdk_base_url(settings: Settings) -> str | None:
    """Where the Twilio SDK sends its requests: Twilio, or the sandbox carrier."""
    if settings.twilio_api_base_url:
        return settings.twilio_api_base_url
    if settings.sandbox and settings.sandbox_url:
        return f"{settings.sandbox_url}/sandbox"
    if settings.sandbox:
        # The mounted sandbox answers on our own listening address, whatever the public URL.
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
        return f"http://{host}:{settings.port}/sandbox"
    return None


def setup(app: web.Application) -> None:
    """Register the connections and set up each package that has a hook (its routes and
    validators); add after the agents' cleanup context (its client is used)."""
    app[CONNECTIONS] = registered()
    # Every package is set up whether or not its provider is configured: the sandbox plays
    # each provider, and a campaign may name any registered connection.
    for package in PACKAGES:
        package.setup(app)
    app.cleanup_ctx.append(_dialers)


async def _dialers(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    sm = app[SESSIONMAKER]

    async def remember(attempt_id: str, conversation_id: str) -> None:
        await conversation_known(sm, attempt_id, conversation_id)

    carrier = TwilioDialer(
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token,
        public_url=settings.base_url,
        api_base_url=sdk_base_url(settings),
        default_from=settings.from_number,
        timeout_seconds=settings.provider_timeout_seconds,
    )
    parts = DialerParts(
        settings=settings, carrier=carrier, agents=app[ELEVENLABS], on_conversation=remember
    )
    connections: Mapping[str, Connection] = app[CONNECTIONS]
    router = DialerRouter(
        carrier,
        {
            name: (connection.dialer(parts), connection.owns_call)
            for name, connection in connections.items()
            if connection.dialer is not None
        },
        {name: connection.provider for name, connection in connections.items()},
    )
    # The one chain: every user of app[DIALER] (dispatcher, reconciler, webhooks, API) sees it.
    app[DIALER] = metered_dialer(app, router)
    yield
    await carrier.close()
