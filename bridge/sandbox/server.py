"""`callbridge sandbox`: the sandbox carrier as a process of its own.

Several service nodes sharing one database must share one carrier, as they would share Twilio:
each node mounting its own sandbox would resume the same unfinished calls on start. Run this once
and point every node at it with ``CALLBRIDGE_SANDBOX_URL``. It also outlives the nodes, so a node
killed mid-call leaves its calls running, with their callbacks failing, as a real carrier would.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from bridge.migrate import upgrade_to_head
from bridge.ops.retention import PRUNE_EVERY_SECONDS
from bridge.sandbox.carrier import SandboxCarrier, build_carrier
from bridge.sandbox.credentials import GENERATORS, stored_auth_token
from bridge.sandbox.inspection import api_key_guard
from bridge.settings import SANDBOX_AUTH_TOKEN, Settings, is_loopback
from campaigns import retention
from campaigns.clock import utcnow
from campaigns.db import make_engine, make_sessionmaker
from campaigns.installation import ensure_secrets

logger = logging.getLogger(__name__)


async def _prune_periodically(carrier: SandboxCarrier, days: float) -> None:
    """The carrier's own call log obeys the retention setting too (CALLBRIDGE_RETENTION_DAYS)."""
    while True:
        before = retention.cutoff(utcnow(), days)
        if before is not None:
            try:
                await carrier.prune(before)
            except Exception:
                logger.exception("sandbox: pruning the call log failed; trying again later")
        await asyncio.sleep(PRUNE_EVERY_SECONDS)


def create_sandbox_app(settings: Settings, host: str = "127.0.0.1") -> web.Application:
    """The carrier alone. Listening beyond the loopback (``host``), it uses the installation's
    auth token (created if no node has yet) and asks an API key for its inspection routes."""
    engine = make_engine(settings.database_url, **settings.engine_options)
    exposed = not is_loopback(host)
    # A token set in the environment is used as it is; else the installation's, once stored.
    follows_installation = settings.twilio_auth_token == SANDBOX_AUTH_TOKEN
    guard = api_key_guard(settings.api_keys, make_sessionmaker(engine)) if exposed else None
    carrier = build_carrier(
        engine,
        settings,
        inspection_guard=guard,
        installation_token=stored_auth_token(engine) if follows_installation else None,
    )
    app = web.Application()
    app.add_subapp("/sandbox", carrier.app())

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.router.add_get("/healthz", healthz)

    async def running(app: web.Application) -> AsyncIterator[None]:
        if exposed and follows_installation:
            if settings.migrate_on_start:
                await upgrade_to_head(engine)
            await ensure_secrets(engine, GENERATORS)
        await carrier.start()
        pruning = asyncio.create_task(_prune_periodically(carrier, settings.retention_days))
        yield
        pruning.cancel()
        await asyncio.gather(pruning, return_exceptions=True)
        await carrier.close()
        await engine.dispose()

    app.cleanup_ctx.append(running)
    return app
