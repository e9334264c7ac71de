"""The web dashboard: a page at /, its read-only JSON under /api/v1/dashboard, a live stream."""

from __future__ import annotations

from aiohttp import web

from bridge.app_keys import DASHBOARD_HUB, SETTINGS
from bridge.dashboard import api, pages, stream
from bridge.dashboard.session import Tickets


def setup(app: web.Application) -> None:
    """Mount the dashboard; call after app[EVENTS] exists."""
    app[DASHBOARD_HUB] = stream.StreamHub(Tickets(app[SETTINGS].dashboard_secret))
    app.add_routes(pages.routes)
    app.add_routes(api.routes)
    app.add_routes(stream.routes)
    app.cleanup_ctx.append(stream.hub_context)
    app.on_shutdown.append(stream.on_shutdown)
