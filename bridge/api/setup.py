"""Mounts the API modules of this package, the rate limiter and the webhook outbox on the app."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from bridge.api import api_keys, batch_calling, openapi, webhooks
from bridge.api.auth_throttle import FailedAuthThrottle
from bridge.api.ratelimit import RateLimiter
from bridge.api.webhook_delivery import WebhookDeliverer
from bridge.keys import (
    AUTH_THROTTLE,
    EVENTS,
    RATE_LIMITER,
    SESSIONMAKER,
    SETTINGS,
    WEBHOOK_DELIVERER,
)
from campaigns.outbox import enqueue


def setup(app: web.Application) -> None:
    """Call after the database cleanup context is added (the deliverer needs the schema)."""
    app[RATE_LIMITER] = RateLimiter()
    app[AUTH_THROTTLE] = FailedAuthThrottle()
    for module in (openapi, api_keys, webhooks, batch_calling):
        app.add_routes(module.api.routes)
    # Outbox rows are written inside the transaction that emits the events.
    app[EVENTS].before_commit.append(enqueue)
    app.cleanup_ctx.append(_webhook_delivery)


async def _webhook_delivery(app: web.Application) -> AsyncIterator[None]:
    deliverer = WebhookDeliverer(app[SESSIONMAKER], app[SETTINGS])
    app[WEBHOOK_DELIVERER] = deliverer
    app[EVENTS].after_commit.append(deliverer.wake)
    deliverer.start()
    yield
    await deliverer.stop()
