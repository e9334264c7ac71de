"""Readiness: may a load balancer send this node work? (Liveness is /healthz in bridge/app.py.)"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import text

from bridge.app_keys import ENGINE, OPS_STATE, SCHEDULER

routes = web.RouteTableDef()

DATABASE_CHECK_SECONDS = 3.0


@dataclass
class OpsState:
    """What this process is doing, for /readyz and graceful shutdown."""

    draining: bool = False


async def _database_ok(request: web.Request) -> bool:
    try:
        async with asyncio.timeout(DATABASE_CHECK_SECONDS):
            async with request.app[ENGINE].connect() as conn:
                await conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    app = request.app
    scheduler = app.get(SCHEDULER)
    checks = {
        "database": await _database_ok(request),
        "scheduler": scheduler is not None and scheduler.running,
        "accepting_work": not app[OPS_STATE].draining,
    }
    ready = all(checks.values())
    return web.json_response(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status=200 if ready else 503,
    )
