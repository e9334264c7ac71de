"""Retention: what grows by design (call events, outgoing webhook deliveries) is deleted once
older than the configured number of days (``CALLBRIDGE_RETENTION_DAYS``), by housekeeping.

Contacts, attempts and campaigns are the record a user keeps and are never pruned; a call event
is the raw callback behind an attempt's status, which the attempt already holds. A delivery
still pending is kept whatever its age (its retries end on their own window).

Rows go in batches, each in a short transaction, so that pruning a long history never holds
the database (SQLite's single writer above all) for long.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from campaigns.api_tables import DeliveryStatus, WebhookDelivery
from campaigns.models import CallEvent

# Rows per transaction: a few milliseconds of work each, even on SQLite.
BATCH = 2000


def cutoff(now: datetime, days: float) -> datetime | None:
    """The instant before which rows go; None when retention is off (0 days)."""
    return now - timedelta(days=days) if days > 0 else None


async def prune(
    sm: async_sessionmaker[AsyncSession], before: datetime, batch: int = BATCH
) -> dict[str, int]:
    """Delete call events and finished webhook deliveries older than ``before``."""
    return {
        "call_events": await _in_batches(sm, CallEvent.id, CallEvent.received_at < before, batch),
        # Their attempts' log goes with them (ON DELETE CASCADE).
        "webhook_deliveries": await _in_batches(
            sm,
            WebhookDelivery.id,
            (WebhookDelivery.created_at < before)
            & (WebhookDelivery.status != DeliveryStatus.PENDING),
            batch,
        ),
    }


async def _in_batches(
    sm: async_sessionmaker[AsyncSession],
    key: InstrumentedAttribute[Any],
    condition: ColumnElement[bool],
    batch: int,
) -> int:
    deleted = 0
    while True:
        async with sm.begin() as session:
            chosen = list(await session.scalars(select(key).where(condition).limit(batch)))
            if chosen:
                await session.execute(delete(key.class_).where(key.in_(chosen)))
        deleted += len(chosen)
        if len(chosen) < batch:
            return deleted
