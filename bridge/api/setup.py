"""Mounts the API modules of this package, the rate limiter and the webhook outbox on the app."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from bridge.api import (
    api_keys,
    batch_calling,
    openapi,
    outbound_campaigns,
    webhook_subscriptions,
)
from bridge.api.auth_throttle import FailedAuthThrottle
from bridge.api.ratelimit import RateLimiter
from bridge.app_keys import (
    AUTH_THROTTLE,
    EVENTS,
    OUTGOING,
    OUTGOING_RESOLVER,
    RATE_LIMITER,
    SESSIONMAKER,
    SETTINGS,
    WEBHOOK_DELIVERER,
)
from bridge.outgoing.delivery import WebhookDeliverer
from bridge.outgoing.guard import GuardedClient, TargetPolicy
from campaigns.outbox import enqueue


def setup(app: web.Application) -> None:
    """Call after the database cleanup context is added (the deliverer needs the schema)."""
    app[RATE_LIMITER] = RateLimiter()
    app[AUTH_THROTTLE] = FailedAuthThrottle()
    for module in (openapi, api_keys, webhook_subscriptions, batch_calling, outbound_campaigns):
        app.add_routes(module.api.routes)
    # Outbox rows are written inside the transaction that emits the events.
    app[EVENTS].before_commit.append(enqueue)
    app.cleanup_ctx.append(_webhook_delivery)


async def _webhook_delivery(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # One guarded client checks subscriptions when registered and sends their deliveries; a
    # resolver set under OUTGOING_RESOLVER before start-up replaces the system's.
    http = GuardedClient(
        TargetPolicy.from_settings(settings),
        timeout_seconds=settings.webhook_timeout_seconds,
        resolver=app.get(OUTGOING_RESOLVER),
    )
    await http.start()
    app[OUTGOING] = http
    deliverer = WebhookDeliverer(app[SESSIONMAKER], settings, http)
    app[WEBHOOK_DELIVERER] = deliverer
    app[EVENTS].after_commit.append(deliverer.wake)
    deliverer.start()
    yield
    await deliverer.stop()
    await http.close()
