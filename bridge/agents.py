"""Wiring for the agent side: media relay, post-call webhooks, ElevenLabs client, native dialer,
and (in sandbox mode) the in-process sandbox agent."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from sqlalchemy import update

from bridge.keys import (
    AGENT_CONNECTOR,
    DIALER,
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
from bridge.telephony.elevenlabs import ElevenLabsClient, ElevenLabsDialer
from bridge.telephony.routing import DialerRouter
from bridge.webhooks import elevenlabs as elevenlabs_webhooks
from bridge.webhooks.elevenlabs import apply_waiting_reports
from campaigns.models import Attempt

SANDBOX_AGENT_PATH = "/sandbox/elevenlabs"


def setup(app: web.Application, settings: Settings) -> None:
    """Add routes and resources; call after the Twilio dialer's cleanup context is added."""
    app.add_routes(media_routes.routes)
    app.add_routes(elevenlabs_webhooks.routes)
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

    async def remember(attempt_id: str, conversation_id: str) -> None:
        async with sm.begin() as db:
            await db.execute(
                update(Attempt)
                .where(Attempt.id == attempt_id, Attempt.conversation_id.is_(None))
                .values(conversation_id=conversation_id)
            )
        # A short call's report may have come first: it is applied now.
        await apply_waiting_reports(sm, attempt_id, conversation_id)

    native = ElevenLabsDialer(
        client, timeout_seconds=settings.provider_timeout_seconds, on_conversation=remember
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
    # Every user of the app's dialer (the dispatcher above all) now picks per campaign.
    app[DIALER] = DialerRouter(app[DIALER], native)  # type: ignore[assignment]
    sandbox_agent = app.get(SANDBOX_AGENT)
    if sandbox_agent is not None:
        await sandbox_agent.start()
    yield
    await connector.close()
    if sandbox_agent is not None:
        await sandbox_agent.close()
    await session.close()
