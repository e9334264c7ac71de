"""The sandbox's secrets: the fixed, published ones on the loopback, the installation's own beyond.

Sandbox mode needs an auth token (the carrier's Basic auth, callback and media signatures), an
ElevenLabs API key and webhook secret (the sandbox agent), and a dashboard secret. On the loopback
the fixed values in `bridge.settings` are fine and keep the demo and tests simple. A process that
listens beyond the loopback generates the installation's own (once, kept in the database), and
every process of the installation then uses them: nodes read them at start, and a carrier run on
its own (`callbridge sandbox`) also re-reads them when a request presents a token it does not know,
since the nodes may create them after it started. Secrets configured in the environment
(``TWILIO_AUTH_TOKEN``, ``ELEVENLABS_*``, ``CALLBRIDGE_DASHBOARD_SECRET``) always win.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.migrate import upgrade_to_head
from bridge.settings import SANDBOX_AUTH_TOKEN, Settings
from campaigns.db import make_engine
from campaigns.installation import ensure_secrets, stored_secrets

AUTH_TOKEN = "sandbox_twilio_auth_token"
AGENT_API_KEY = "sandbox_elevenlabs_api_key"
AGENT_WEBHOOK_SECRET = "sandbox_elevenlabs_webhook_secret"
DASHBOARD_SECRET = "dashboard_secret"

# Shaped like the real ones (a Twilio auth token is 32 hex digits), 128 bits or more each.
GENERATORS: dict[str, Callable[[], str]] = {
    AUTH_TOKEN: lambda: secrets.token_hex(16),
    AGENT_API_KEY: lambda: "sk_" + secrets.token_hex(24),
    AGENT_WEBHOOK_SECRET: lambda: "wsec_" + secrets.token_hex(24),
    DASHBOARD_SECRET: lambda: secrets.token_urlsafe(32),
}


async def with_installation_secrets(
    settings: Settings, engine: AsyncEngine, *, create: bool
) -> Settings:
    """``settings`` with the installation's secrets in place of the fixed sandbox ones: created
    first if ``create`` (a process listening beyond the loopback), else only if already stored."""
    if not settings.sandbox:
        return settings
    if create:
        stored = await ensure_secrets(engine, GENERATORS)
    else:
        stored = await stored_secrets(engine, list(GENERATORS))
    if not stored:
        return settings
    changes: dict[str, object] = {}
    if settings.twilio_auth_token == SANDBOX_AUTH_TOKEN and AUTH_TOKEN in stored:
        changes["twilio_auth_token"] = stored[AUTH_TOKEN]
    if settings.elevenlabs_api_key is None and AGENT_API_KEY in stored:
        changes["elevenlabs_api_key"] = stored[AGENT_API_KEY]
    if settings.elevenlabs_webhook_secret is None and AGENT_WEBHOOK_SECRET in stored:
        changes["elevenlabs_webhook_secret"] = stored[AGENT_WEBHOOK_SECRET]
    if settings.dashboard_secret is None and DASHBOARD_SECRET in stored:
        changes["dashboard_secret"] = stored[DASHBOARD_SECRET]
    return settings.with_(**changes)


async def installation_settings(settings: Settings) -> Settings:
    """What `callbridge serve` runs with: the schema migrated (if allowed), then the
    installation's secrets in place of the fixed sandbox ones where they apply."""
    if not settings.sandbox:
        return settings
    engine = make_engine(settings.database_url)
    try:
        if settings.exposed_sandbox and settings.migrate_on_start:
            await upgrade_to_head(engine)
        return await with_installation_secrets(settings, engine, create=settings.exposed_sandbox)
    finally:
        await engine.dispose()


def stored_auth_token(engine: AsyncEngine) -> Callable[[], Awaitable[str | None]]:
    """For a carrier run on its own: the installation's auth token, once one is stored."""

    async def token() -> str | None:
        return (await stored_secrets(engine, [AUTH_TOKEN])).get(AUTH_TOKEN)

    return token
