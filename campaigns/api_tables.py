"""Tables of the integration surface: API keys, batch calls, outgoing webhooks and their outbox.

Registered on ``campaigns.base.Base``, with the others (campaigns.tables).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from campaigns.base import Base
from campaigns.clock import utcnow


class ApiKey(Base):
    """An API key: only its SHA-256 is stored; the key itself is shown once, at creation."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # The first characters of the key, so people can tell their keys apart.
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Requests per minute for this key; None: the service default.
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)
    # read, write or admin (campaigns.api_key_store.SCOPES). Keys made before scopes existed are
    # write.
    scope: Mapped[str] = mapped_column(String(16), default="write", server_default="write")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class BatchCall(Base):
    """What an ElevenLabs-style batch adds to its campaign (a campaign without a row is shown with
    defaults)."""

    __tablename__ = "batch_calls"

    campaign_id: Mapped[str] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    telephony_call_config: Mapped[dict[str, Any] | None]
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookSubscription(Base):
    __tablename__ = "webhook_subscriptions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[Any]]
    secret: Mapped[str] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeliveryStatus:
    PENDING = "pending"
    DELIVERED = "delivered"
    # Retried for the whole retry window without success.
    FAILED = "failed"
    # The subscription was disabled or deleted before delivery.
    CANCELLED = "cancelled"


class WebhookDelivery(Base):
    """The outbox: one row per (event, subscription), written in the transaction of the change."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "subscription_id", name="uq_webhook_deliveries_event"),
        # The deliverer's claim: due pending rows, earliest first.
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_subscription", "subscription_id", "created_at"),
        # Retention deletes the oldest (campaigns/retention.py) without reading the whole table.
        Index("ix_webhook_deliveries_created_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE")
    )
    event_id: Mapped[str] = mapped_column(String(32))
    event_type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When the next try is due; while a node is sending, a lease that keeps other nodes off.
    next_attempt_at: Mapped[datetime]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]


class WebhookDeliveryAttempt(Base):
    """Each HTTP try of a delivery, for the delivery log the API shows."""

    __tablename__ = "webhook_delivery_attempts"
    __table_args__ = (Index("ix_webhook_delivery_attempts_delivery", "delivery_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    attempted_at: Mapped[datetime]
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)


class OutboundCampaign(Base):
    """What makes a campaign an outbound campaign of the ElevenLabs-compatible API: the policy it
    took when created and the key that makes its create safe to repeat. Only campaigns with a row
    here are listed as outbound campaigns (as batches are by batch_calls)."""

    __tablename__ = "outbound_campaigns"

    campaign_id: Mapped[str] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    # A hash of the create request: the same key with another request is refused.
    request_hash: Mapped[str] = mapped_column(String(64))
    variant: Mapped[str] = mapped_column(String(16))
    phone_number_id: Mapped[str] = mapped_column(String(200))
    mode_config: Mapped[dict[str, Any] | None]
    # The policy as submitted (or taken from the workspace configuration), shown back as is.
    policy: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboundConfig(Base):
    """The workspace's outbound campaign configuration: one row, replaced whole, versioned so a
    replacement based on a stale read is refused."""

    __tablename__ = "outbound_config"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
