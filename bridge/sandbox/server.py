"""`callbridge sandbox`: the sandbox carrier as a process of its own.

Several service nodes sharing one database must share one carrier, as they would share Twilio:
each node mounting its own sandbox would resume the same unfinished calls on start. Run this once
and point every node at it with ``CALLBRIDGE_SANDBOX_URL``. It also outlives the nodes, so a node
killed mid-call leaves its calls running, with their callbacks failing, as a real carrier would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from bridge.sandbox.carrier import SandboxCarrier
from bridge.settings import Settings
from campaigns.db import make_engine


def create_sandbox_app(settings: Settings) -> web.Application:
    engine = make_engine(settings.database_url, **settings.engine_options)
    carrier = SandboxCarrier(
        engine,
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token,
        ring_seconds=settings.sandbox_ring_seconds,
        talk_seconds=settings.sandbox_talk_seconds,
        faults=settings.sandbox_faults,
    )
    app = web.Application()
    app.add_subapp("/sandbox", carrier.app())

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.router.add_get("/healthz", healthz)

    async def running(app: web.Application) -> AsyncIterator[None]:
        await carrier.start()
        yield
        await carrier.close()
        await engine.dispose()

    app.cleanup_ctx.append(running)
    return app
