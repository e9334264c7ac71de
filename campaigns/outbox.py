"""The outgoing-webhook outbox: rows written in the transaction of the change they report, then
claimed, sent (by bridge) and settled with exponential backoff.

Each domain event becomes one envelope ``{id, type, created_at, data}`` and one delivery row per
subscription that wants it. Claims take due rows with SKIP LOCKED and move them a lease ahead, so
nodes sharing one PostgreSQL database never send the same row at the same time; a node that dies
while sending leaves the row to be sent again once the lease runs out (receivers dedupe by id).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from campaigns.api_tables import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookDeliveryAttempt,
    WebhookSubscription,
)
from campaigns.clock import iso_z, utcnow
from campaigns.events import AttemptEnded, CampaignCompleted, ContactFinished
from campaigns.ids import new_id
from campaigns.models import Attempt, Campaign, Contact

CALL_COMPLETED = "call.completed"
CONTACT_FINISHED = "contact.finished"
CAMPAIGN_COMPLETED = "campaign.completed"
EVENT_TYPES = (CALL_COMPLETED, CONTACT_FINISHED, CAMPAIGN_COMPLETED)


def _envelope(session: Session, event: Any, now: datetime) -> tuple[str, dict[str, Any]] | None:
    if isinstance(event, AttemptEnded):
        attempt = session.get(Attempt, event.attempt_id)
        if attempt is None:
            return None
        kind = CALL_COMPLETED
        data: dict[str, Any] = {
            "attempt_id": attempt.id,
            "campaign_id": attempt.campaign_id,
            "contact_id": attempt.contact_id,
            "number": attempt.number,
            "phone_number": attempt.phone_number,
            "direction": attempt.direction,
            "status": attempt.status,
            "outcome": attempt.outcome,
            "answered_by": attempt.answered_by,
            "provider_call_id": attempt.provider_call_id,
            "conversation_id": attempt.conversation_id,
            "ring_seconds": attempt.ring_seconds,
            "talk_seconds": attempt.talk_seconds,
            "error_code": attempt.error_code,
            "dialed_at": iso_z(attempt.dialed_at),
            "answered_at": iso_z(attempt.answered_at),
            "ended_at": iso_z(attempt.ended_at),
        }
    elif isinstance(event, ContactFinished):
        contact = session.get(Contact, event.contact_id)
        if contact is None:
            return None
        kind = CONTACT_FINISHED
        data = {
            "contact_id": contact.id,
            "campaign_id": contact.campaign_id,
            "external_id": contact.external_id,
            "phone_number": contact.phone_number,
            "disposition": event.disposition,
            "attempts": contact.attempts_made,
            "dynamic_variables": dict(contact.dynamic_variables or {}),
            "finished_at": iso_z(contact.finished_at),
        }
    elif isinstance(event, CampaignCompleted):
        campaign = session.get(Campaign, event.campaign_id)
        if campaign is None:
            return None
        kind = CAMPAIGN_COMPLETED
        data = {
            "campaign_id": campaign.id,
            "name": campaign.name,
            "status": campaign.status,
            "completed_at": iso_z(campaign.completed_at),
        }
    else:
        return None
    return kind, {"id": new_id("evt"), "type": kind, "created_at": iso_z(now), "data": data}


def enqueue(session: Session, events: Sequence[Any]) -> None:
    """A ``before_commit`` listener: the deliveries commit with the change, or not at all."""
    subscriptions = list(
        session.scalars(select(WebhookSubscription).where(WebhookSubscription.enabled.is_(True)))
    )
    if not subscriptions:
        return
    now = utcnow()
    for event in events:
        wanted = [s for s in subscriptions if _event_type(event) in (s.events or [])]
        if not wanted:
            continue
        made = _envelope(session, event, now)
        if made is None:
            continue
        kind, envelope = made
        for subscription in wanted:
            session.add(
                WebhookDelivery(
                    id=new_id("whd"),
                    subscription_id=subscription.id,
                    event_id=envelope["id"],
                    event_type=kind,
                    payload=envelope,
                    status=DeliveryStatus.PENDING,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )


def _event_type(event: Any) -> str | None:
    return {
        AttemptEnded: CALL_COMPLETED,
        ContactFinished: CONTACT_FINISHED,
        CampaignCompleted: CAMPAIGN_COMPLETED,
    }.get(type(event))


@dataclass(frozen=True)
class Backoff:
    base_seconds: float = 10.0
    max_seconds: float = 3600.0
    window: timedelta = timedelta(hours=24)

    def delay(self, attempts: int) -> timedelta:
        """Before the next try, after ``attempts`` failed ones: doubling, capped, 20 % jitter."""
        seconds = min(self.max_seconds, self.base_seconds * 2 ** max(0, attempts - 1))
        return timedelta(seconds=seconds * random.uniform(0.8, 1.0))


@dataclass(frozen=True)
class Claimed:
    delivery_id: str
    subscription_id: str
    url: str
    secret: str
    event_id: str
    event_type: str
    payload: dict[str, Any]


async def claim_due(
    sm: async_sessionmaker[AsyncSession], *, limit: int, lease: timedelta
) -> list[Claimed]:
    now = utcnow()
    joined = WebhookDelivery.subscription_id == WebhookSubscription.id
    async with sm.begin() as session:
        rows = (
            await session.execute(
                select(WebhookDelivery, WebhookSubscription)
                .join(WebhookSubscription, joined)
                .where(
                    WebhookDelivery.status == DeliveryStatus.PENDING,
                    WebhookDelivery.next_attempt_at <= now,
                    WebhookSubscription.enabled.is_(True),
                )
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(limit)
                .with_for_update(skip_locked=True, of=WebhookDelivery)
            )
        ).all()
        claimed = []
        for delivery, subscription in rows:
            delivery.next_attempt_at = now + lease
            claimed.append(
                Claimed(
                    delivery.id,
                    subscription.id,
                    subscription.url,
                    subscription.secret,
                    delivery.event_id,
                    delivery.event_type,
                    dict(delivery.payload),
                )
            )
        return claimed


async def record_result(
    sm: async_sessionmaker[AsyncSession],
    claimed: Claimed,
    *,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
    backoff: Backoff,
    retry: bool = True,
) -> str:
    """Settle one try; returns the delivery's new status. ``retry=False``: a failed try is the
    last (the target itself was refused, so another try cannot go better)."""
    now = utcnow()
    async with sm.begin() as session:
        delivery = await session.get(WebhookDelivery, claimed.delivery_id, with_for_update=True)
        if delivery is None or delivery.status != DeliveryStatus.PENDING:
            return delivery.status if delivery is not None else DeliveryStatus.CANCELLED
        session.add(
            WebhookDeliveryAttempt(
                delivery_id=delivery.id,
                attempted_at=now,
                status_code=status_code,
                error=error,
                duration_ms=duration_ms,
            )
        )
        delivery.attempts += 1
        delivery.last_status_code = status_code
        delivery.last_error = error
        if status_code is not None and 200 <= status_code < 300:
            delivery.status = DeliveryStatus.DELIVERED
            delivery.delivered_at = now
        elif status_code == 410:
            # The receiver says it is gone for good: stop sending it anything.
            delivery.status = DeliveryStatus.FAILED
            await _disable(session, claimed.subscription_id, "receiver answered 410 Gone")
        elif not retry:
            delivery.status = DeliveryStatus.FAILED
        else:
            retry_at = now + backoff.delay(delivery.attempts)
            if retry_at > delivery.created_at + backoff.window:
                delivery.status = DeliveryStatus.FAILED
            else:
                delivery.next_attempt_at = retry_at
        return delivery.status


async def _disable(session: AsyncSession, subscription_id: str, reason: str) -> None:
    await session.execute(
        update(WebhookSubscription)
        .where(WebhookSubscription.id == subscription_id)
        .values(enabled=False, disabled_reason=reason)
    )
    await cancel_pending(session, subscription_id)


async def cancel_pending(session: AsyncSession, subscription_id: str) -> None:
    await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.subscription_id == subscription_id,
            WebhookDelivery.status == DeliveryStatus.PENDING,
        )
        .values(status=DeliveryStatus.CANCELLED)
    )


async def next_due(sm: async_sessionmaker[AsyncSession]) -> datetime | None:
    async with sm() as session:
        return await session.scalar(
            select(WebhookDelivery.next_attempt_at)
            .where(WebhookDelivery.status == DeliveryStatus.PENDING)
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(1)
        )
