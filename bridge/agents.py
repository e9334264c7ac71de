"""Wiring for the agent side: media relay, post-call webhooks, the ElevenLabs client, and (in
sandbox mode) the in-process sandbox agent."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from bridge.app_keys import (
    AGENT_CONNECTOR,
    ELEVENLABS,
    MEDIA_TOKEN_SECRET,
    SANDBOX_AGENT,
    SESSIONMAKER,
    SETTINGS,
)
from bridge.media import routes as media_routes
from bridge.media.client_tools import callbridge_tools
from bridge.media.connector import AgentConnector
from bridge.media.tokens import derive_secret
from bridge.sandbox.agent import SandboxAgent
from bridge.sandbox.inspection import inspection_guard
from bridge.settings import Settings
from bridge.telephony.elevenlabs.client import ElevenLabsClient

SANDBOX_AGENT_PATH = "/sandbox/elevenlabs"


def setup(app: web.Application, settings: Settings) -> None:
    """Add routes and resources; call before the telephony factory (its dialers use the client)."""
    app.add_routes(media_routes.routes)
    app[MEDIA_TOKEN_SECRET] = derive_secret(settings.twilio_auth_token)
    if settings.sandbox and not settings.elevenlabs_url:
        agent = SandboxAgent(
            api_key=settings.agent_api_key,
            webhook_secret=settings.agent_webhook_secret,
            base_url=f"{settings.local_url}{SANDBOX_AGENT_PATH}",
            webhook_url=f"{settings.local_url}/webhooks/elevenlabs",
            # Native calls are placed on the same sandbox carrier the Twilio dialer uses.
            carrier_url=f"{settings.sandbox_url or settings.local_url}/sandbox",
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token,
            inspection_guard=inspection_guard(app),
            records_limit=settings.sandbox_memory_records,
            journal_limit=settings.sandbox_journal_entries,
            faults=settings.sandbox_faults,
        )
        app[SANDBOX_AGENT] = agent
        app.add_subapp(SANDBOX_AGENT_PATH, agent.app())
    app.cleanup_ctx.append(_agents)


async def _agents(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    sm = app[SESSIONMAKER]
    session = aiohttp.ClientSession()
    client = ElevenLabsClient(
        session,
        base_url=settings.agent_api_url,
        api_key=settings.agent_api_key,
        timeout_seconds=settings.provider_timeout_seconds,
    )

    connector = AgentConnector(
        client,
        session,
        sm,
        timeout_seconds=settings.provider_timeout_seconds,
        tools=callbridge_tools(sm),
    )
    app[ELEVENLABS] = client
    app[AGENT_CONNECTOR] = connector
    sandbox_agent = app.get(SANDBOX_AGENT)
    if sandbox_agent is not None:
        await sandbox_agent.start()
    yield
    await connector.close()
    if sandbox_agent is not None:
        await sandbox_agent.close()
    await session.close()
