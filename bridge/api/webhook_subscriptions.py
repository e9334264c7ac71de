"""Outgoing webhook subscriptions and their delivery log."""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web
from sqlalchemy import delete, select

from bridge.api.errors import ApiError
from bridge.api.openapi import PAGE_HEADERS, PAGE_QUERY, Api, Response, body_of, query_of, ref
from bridge.api.paging import page_of
from bridge.app_keys import OUTGOING, READ_SESSIONMAKER, SESSIONMAKER, WEBHOOK_DELIVERER
from bridge.outgoing.guard import TargetRefused
from campaigns.api_key_store import ADMIN
from campaigns.api_tables import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookDeliveryAttempt,
    WebhookSubscription,
)
from campaigns.clock import iso_z, utcnow
from campaigns.ids import new_id
from campaigns.outbox import EVENT_TYPES, cancel_pending

api = Api(
    "webhooks",
    "Outgoing webhooks: call.completed, contact.finished, campaign.completed, signed with "
    "Callbridge-Signature: t=<unix>,v0=<hex HMAC-SHA256(secret, '<t>.<body>')>.",
    # A subscription sends the service's events (numbers, outcomes) to any URL: admin only.
    scope=ADMIN,
)
routes = api.routes


EVENTS = {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"enum": list(EVENT_TYPES)}}
URL = {
    "type": "string",
    "minLength": 8,
    "maxLength": 2000,
    "pattern": "^https?://",
    "description": "A public http(s) URL without credentials. Loopback, private, CGNAT, "
    "link-local (cloud metadata), multicast and reserved addresses, names resolving to any of "
    "them or to none, and this service itself are refused with 422 webhook_url_not_allowed "
    "(CALLBRIDGE_WEBHOOK_ALLOW_PRIVATE_TARGETS lets an operator allow private ones).",
}
SUBSCRIPTION = api.schema(
    "WebhookSubscription",
    {
        "type": "object",
        "required": ["id", "url", "events", "enabled", "created_at"],
        "properties": {
            "id": {"type": "string"},
            "url": {"type": "string"},
            "events": {"type": "array", "items": {"type": "string"}},
            "enabled": {"type": "boolean"},
            "disabled_reason": {"type": ["string", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "secret": {"type": "string", "description": "Shown only when created"},
        },
    },
)
SUBSCRIPTION_CREATE = api.schema(
    "WebhookSubscriptionCreate",
    {
        "type": "object",
        "required": ["url", "events"],
        "additionalProperties": False,
        "properties": {
            "url": URL,
            "events": EVENTS,
            "secret": {"type": "string", "minLength": 16, "maxLength": 200},
        },
    },
)
SUBSCRIPTION_UPDATE = api.schema(
    "WebhookSubscriptionUpdate",
    {
        "type": "object",
        "additionalProperties": False,
        "properties": {"url": URL, "events": EVENTS, "enabled": {"type": "boolean"}},
    },
)
DELIVERY_ATTEMPT = api.schema(
    "WebhookDeliveryAttempt",
    {
        "type": "object",
        "properties": {
            "attempted_at": {"type": "string", "format": "date-time"},
            "status_code": {"type": ["integer", "null"]},
            "error": {"type": ["string", "null"]},
            "duration_ms": {"type": "integer"},
        },
    },
)
DELIVERY = api.schema(
    "WebhookDelivery",
    {
        "type": "object",
        "required": ["id", "subscription_id", "event_id", "event_type", "status", "attempts"],
        "properties": {
            "id": {"type": "string"},
            "subscription_id": {"type": "string"},
            "event_id": {"type": "string"},
            "event_type": {"type": "string"},
            "status": {"enum": ["pending", "delivered", "failed", "cancelled"]},
            "attempts": {"type": "integer"},
            "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
            "last_status_code": {"type": ["integer", "null"]},
            "last_error": {"type": ["string", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "delivered_at": {"type": ["string", "null"], "format": "date-time"},
            "payload": {"type": "object"},
            "attempt_log": {"type": "array", "items": ref("WebhookDeliveryAttempt")},
        },
    },
)


def subscription_json(subscription: WebhookSubscription) -> dict[str, Any]:
    return {
        "id": subscription.id,
        "url": subscription.url,
        "events": list(subscription.events or []),
        "enabled": subscription.enabled,
        "disabled_reason": subscription.disabled_reason,
        "created_at": iso_z(subscription.created_at),
    }


def delivery_json(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "subscription_id": delivery.subscription_id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": iso_z(delivery.next_attempt_at)
        if delivery.status == "pending"
        else None,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "created_at": iso_z(delivery.created_at),
        "delivered_at": iso_z(delivery.delivered_at),
    }


async def _check_url(request: web.Request, url: str) -> None:
    """The guarded client's own checks, so what registration accepts is what delivery allows."""
    try:
        await request.app[OUTGOING].vet(url)
    except TargetRefused as refused:
        raise ApiError(
            422,
            "webhook_url_not_allowed",
            f"{refused.detail}: webhooks go to public http(s) addresses only (an operator can "
            "allow private ones with CALLBRIDGE_WEBHOOK_ALLOW_PRIVATE_TARGETS)",
            {"field": "url"},
        ) from None


async def _subscription(request: web.Request, session: Any) -> WebhookSubscription:
    subscription_id = request.match_info["subscription_id"]
    subscription = await session.get(WebhookSubscription, subscription_id)
    if subscription is None:
        raise ApiError(404, "not_found", f"no webhook subscription {subscription_id!r}")
    return subscription


@api.post(
    "/api/v1/webhooks",
    summary="Subscribe a URL to events (the secret is generated when not given)",
    body=SUBSCRIPTION_CREATE,
    responses={201: SUBSCRIPTION},
)
async def create(request: web.Request) -> web.Response:
    body = body_of(request)
    await _check_url(request, body["url"])
    subscription = WebhookSubscription(
        id=new_id("wh"),
        url=body["url"],
        events=list(body["events"]),
        secret=body.get("secret") or "whsec_" + secrets.token_urlsafe(32),
        enabled=True,
        created_at=utcnow(),
    )
    async with request.app[SESSIONMAKER].begin() as session:
        session.add(subscription)
    return web.json_response(
        {**subscription_json(subscription), "secret": subscription.secret}, status=201
    )


@api.get(
    "/api/v1/webhooks",
    summary="List webhook subscriptions",
    query=PAGE_QUERY,
    responses={200: Response({"type": "array", "items": SUBSCRIPTION}, headers=PAGE_HEADERS)},
)
async def list_subscriptions(request: web.Request) -> web.Response:
    query = query_of(request)
    page, per_page = query["page"], query["per_page"]
    order = (WebhookSubscription.created_at, WebhookSubscription.id)
    async with request.app[READ_SESSIONMAKER]() as session:
        return await page_of(
            session, WebhookSubscription, [], order, subscription_json, page, per_page
        )


@api.get(
    "/api/v1/webhooks/{subscription_id}",
    summary="One webhook subscription",
    responses={200: SUBSCRIPTION},
)
async def read(request: web.Request) -> web.Response:
    async with request.app[READ_SESSIONMAKER]() as session:
        subscription = await _subscription(request, session)
    return web.json_response(subscription_json(subscription))


@api.patch(
    "/api/v1/webhooks/{subscription_id}",
    summary="Change the URL or events, or re-enable a subscription disabled by a 410",
    body=SUBSCRIPTION_UPDATE,
    responses={200: SUBSCRIPTION},
)
async def update(request: web.Request) -> web.Response:
    body = body_of(request)
    if "url" in body:
        await _check_url(request, body["url"])
    async with request.app[SESSIONMAKER].begin() as session:
        subscription = await _subscription(request, session)
        if "url" in body:
            subscription.url = body["url"]
        if "events" in body:
            subscription.events = list(body["events"])
        if "enabled" in body:
            subscription.enabled = body["enabled"]
            if body["enabled"]:
                subscription.disabled_reason = None
            else:
                subscription.disabled_reason = "disabled over the API"
                await cancel_pending(session, subscription.id)
    return web.json_response(subscription_json(subscription))


@api.delete(
    "/api/v1/webhooks/{subscription_id}",
    summary="Delete a subscription and its delivery log",
    responses={204: Response(description="Deleted")},
)
async def remove(request: web.Request) -> web.Response:
    async with request.app[SESSIONMAKER].begin() as session:
        subscription = await _subscription(request, session)
        await session.execute(
            delete(WebhookSubscription).where(WebhookSubscription.id == subscription.id)
        )
    return web.Response(status=204)


@api.get(
    "/api/v1/webhooks/{subscription_id}/deliveries",
    summary="The subscription's deliveries, newest first",
    query={
        "status": {"enum": ["pending", "delivered", "failed", "cancelled"]},
        "event_type": {"enum": list(EVENT_TYPES)},
        **PAGE_QUERY,
    },
    responses={200: Response({"type": "array", "items": DELIVERY}, headers=PAGE_HEADERS)},
)
async def list_deliveries(request: web.Request) -> web.Response:
    query = query_of(request)
    page, per_page = query["page"], query["per_page"]
    async with request.app[READ_SESSIONMAKER]() as session:
        subscription = await _subscription(request, session)
        where = [WebhookDelivery.subscription_id == subscription.id]
        if query.get("status"):
            where.append(WebhookDelivery.status == query["status"])
        if query.get("event_type"):
            where.append(WebhookDelivery.event_type == query["event_type"])
        order = (WebhookDelivery.created_at.desc(), WebhookDelivery.id)
        return await page_of(session, WebhookDelivery, where, order, delivery_json, page, per_page)


@api.get(
    "/api/v1/webhooks/{subscription_id}/deliveries/{delivery_id}",
    summary="One delivery with its payload and every HTTP attempt",
    responses={200: DELIVERY},
)
async def read_delivery(request: web.Request) -> web.Response:
    delivery_id = request.match_info["delivery_id"]
    async with request.app[READ_SESSIONMAKER]() as session:
        subscription = await _subscription(request, session)
        delivery = await session.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.subscription_id != subscription.id:
            raise ApiError(404, "not_found", f"no delivery {delivery_id!r} for this subscription")
        attempts = await session.scalars(
            select(WebhookDeliveryAttempt)
            .where(WebhookDeliveryAttempt.delivery_id == delivery.id)
            .order_by(WebhookDeliveryAttempt.id)
        )
        body = delivery_json(delivery)
        body["payload"] = delivery.payload
        body["attempt_log"] = [
            {
                "attempted_at": iso_z(a.attempted_at),
                "status_code": a.status_code,
                "error": a.error,
                "duration_ms": a.duration_ms,
            }
            for a in attempts
        ]
    return web.json_response(body)


TEST_EVENT = "webhook.test"


@api.post(
    "/api/v1/webhooks/{subscription_id}/test",
    summary="Send the subscription a test event (type webhook.test), signed as every event is",
    description="The delivery is queued and sent at once, then retried like any other; follow "
    "it with GET /api/v1/webhooks/{subscription_id}/deliveries/{delivery_id}.",
    responses={202: DELIVERY},
)
async def send_test(request: web.Request) -> web.Response:
    now = utcnow()
    async with request.app[SESSIONMAKER].begin() as session:
        subscription = await _subscription(request, session)
        if not subscription.enabled:
            raise ApiError(409, "conflict", "the subscription is disabled; re-enable it first")
        event_id = new_id("evt")
        envelope = {
            "id": event_id,
            "type": TEST_EVENT,
            "created_at": iso_z(now),
            "data": {"subscription_id": subscription.id, "message": "a test event"},
        }
        delivery = WebhookDelivery(
            id=new_id("whd"),
            subscription_id=subscription.id,
            event_id=event_id,
            event_type=TEST_EVENT,
            payload=envelope,
            status=DeliveryStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        session.add(delivery)
    # No domain event woke the sender: wake it here rather than wait for its next poll.
    deliverer = request.app.get(WEBHOOK_DELIVERER)
    if deliverer is not None:
        deliverer.wake()
    return web.json_response({**delivery_json(delivery), "payload": envelope}, status=202)
