"""One call requested by another system: a reminder, a callback, a one-off notification."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns import transitions
from campaigns.call_at import BadCallAt, parse_call_at
from campaigns.clock import utcnow
from campaigns.dnc import blocked_numbers
from campaigns.events import ContactsDue, emit
from campaigns.ids import new_id
from campaigns.lifecycle import CampaignError, get_campaign
from campaigns.models import (
    Attempt,
    AttemptStatus,
    Campaign,
    CampaignStatus,
    Contact,
    MachineDetection,
)
from campaigns.phones import ANY_NUMBER_TYPE, Phone, PhoneRejected, normalize, number_types_of
from campaigns.sqlutil import insert_ignoring_conflicts


def default_campaign_id(agent_id: str | None) -> str:
    """The campaign that collects an agent's single calls: one per agent, same id on every node."""
    digest = hashlib.sha256((agent_id or "").encode()).hexdigest()[:20]
    return f"cmp_agent_{digest}"


REGISTERED_PREFIX = "cmp_reg_"


def registered_campaign_id(agent_id: str) -> str:
    """The campaign that records an agent's registered calls (placed by someone else)."""
    digest = hashlib.sha256(agent_id.encode()).hexdigest()[:20]
    return f"{REGISTERED_PREFIX}{digest}"


def _single_contact(
    campaign: Campaign, phone: Phone, dynamic_variables: Mapping[str, Any], **columns: Any
) -> Contact:
    """A contact of one call, made through the API rather than a file."""
    contact_id = new_id("ct")
    return Contact(
        id=contact_id,
        campaign_id=campaign.id,
        phone_number=phone.e164,
        # Its own scope: the same number may be called through the API any number of times.
        dedupe_scope=contact_id,
        time_zones=list(phone.time_zones),
        dynamic_variables={str(k): v for k, v in dynamic_variables.items()},
        attempts_made=0,
        **columns,
    )


async def _default_campaign(
    session: AsyncSession,
    agent_id: str | None,
    from_number: str | None,
    *,
    registered: bool = False,
) -> Campaign:
    campaign_id = (
        registered_campaign_id(agent_id or "") if registered else default_campaign_id(agent_id)
    )
    name = "Registered calls" if registered else "Single calls"
    now = utcnow()
    # Two first calls for one agent may race: the insert that loses changes nothing.
    await session.execute(
        insert_ignoring_conflicts(
            session,
            Campaign.__table__,  # type: ignore[arg-type]
            {
                "id": campaign_id,
                "name": f"{name} for agent {agent_id or '(none)'}"[:200],
                "agent_id": agent_id,
                "from_number": from_number,
                "default_region": "US",
                "status": CampaignStatus.RUNNING,
                # A registered call was placed by someone else: never dialled again by us.
                "max_attempts": 1 if registered else 3,
                "retry_delay_seconds": 300,
                "concurrency": 10,
                "machine_detection": MachineDetection.UNTIL_GREETING_ENDS,
                "ring_timeout_seconds": 30,
                "time_limit_seconds": 600,
                "timezone": "UTC",
                "voicemail_policy": "hang_up",
                "agent_connection": "stream",
                "created_at": now,
                "started_at": now,
            },
        )
    )
    campaign = await session.get(Campaign, campaign_id, with_for_update=True)
    assert campaign is not None
    if campaign.status == CampaignStatus.COMPLETED:
        # The default campaign takes calls for as long as the agent exists.
        campaign.status = CampaignStatus.RUNNING
    return campaign


class IdempotencyKeyReused(CampaignError):
    """An idempotency key came back with another request than the one it was first used with."""

    def __init__(self) -> None:
        super().__init__(
            "this Idempotency-Key was already used with another request; use a new key for a "
            "new request",
            code="idempotency_key_reused",
        )


@dataclass(frozen=True)
class Idempotency:
    """A client's idempotency key, in the key space of the API key that sent it (``owner``),
    together with the request it came with.

    A repeat of the same request with the same key gets the call the first one made; the same
    key with another request is refused, and another API key's same key is another key. The key
    is remembered for as long as its call is stored.
    """

    owner: str
    key: str
    request: Mapping[str, Any]

    @property
    def stored_key(self) -> str:
        # A hash of both parts: one fixed-size column, and the owner cannot be split off.
        return hashlib.sha256(
            f"{self.owner}\n{self.key}".encode("utf-8", "surrogatepass")
        ).hexdigest()

    @property
    def request_hash(self) -> str:
        # Canonical JSON: the same request with its fields in another order is the same request.
        canonical = json.dumps(self.request, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


async def find_by_key(session: AsyncSession, idempotency: Idempotency) -> Contact | None:
    """The call made with this key by this owner, or None; IdempotencyKeyReused when it was
    made for another request."""
    existing = await session.scalar(
        select(Contact).where(Contact.idempotency_key == idempotency.stored_key)
    )
    if existing is not None and existing.idempotency_request_hash != idempotency.request_hash:
        raise IdempotencyKeyReused()
    return existing


async def place_single_call(
    sm: async_sessionmaker[AsyncSession],
    *,
    to: str,
    agent_id: str | None,
    from_number: str | None,
    dynamic_variables: dict[str, Any],
    call_at: datetime | str | None = None,
    campaign_id: str | None = None,
    idempotency: Idempotency | None = None,
    agent_override: dict[str, Any] | None = None,
    user_id: str | None = None,
    call_options: dict[str, Any] | None = None,
) -> tuple[Contact, bool]:
    """Queue one call. Returns the contact and whether it was created by this request."""
    if idempotency is not None:
        async with sm() as session:
            existing = await find_by_key(session, idempotency)
        if existing is not None:
            return existing, False
    try:
        async with sm.begin() as session:
            contact = await _create(
                session, to, agent_id, from_number, dynamic_variables, call_at, campaign_id
            )
            contact.agent_override = agent_override or None
            contact.user_id = user_id or None
            contact.call_options = call_options or None
            if idempotency is not None:
                contact.idempotency_key = idempotency.stored_key
                contact.idempotency_request_hash = idempotency.request_hash
        return contact, True
    except IntegrityError:
        # The same key arrived twice at once: the other request created the call (and if that
        # was another request, this one is refused like any later one).
        if idempotency is None:
            raise
        async with sm() as session:
            existing = await find_by_key(session, idempotency)
        if existing is None:
            raise
        return existing, False


async def register_call(
    sm: async_sessionmaker[AsyncSession],
    *,
    agent_id: str,
    number: str,
    dynamic_variables: dict[str, Any],
    provider: str,
    agent_override: dict[str, Any] | None = None,
    user_id: str | None = None,
) -> Attempt:
    """Record a call that someone else placed on ``provider`` and now connects to an agent
    through us: a contact of the agent's registered-calls campaign, in progress, with its one
    live attempt.

    The campaign never dials (each contact is in progress from the start, and has one attempt
    at most); the attempt takes the call's id when its audio stream starts.
    """
    try:
        # Any valid number: the call exists already, whatever the number's type.
        phone = normalize(number, "US", ANY_NUMBER_TYPE)
    except PhoneRejected as exc:
        raise CampaignError(
            f"the person's number is not a valid number ({exc.reason})",
            code="invalid_number",
            details=exc.details(),
        ) from exc
    now = utcnow()
    async with sm.begin() as session:
        campaign = await _default_campaign(session, agent_id, None, registered=True)
        contact = _single_contact(
            campaign,
            phone,
            dynamic_variables,
            agent_override=agent_override or None,
            user_id=user_id or None,
        )
        session.add(contact)
        # The contact's row first: nothing tells the flush that the attempt refers to it.
        await session.flush()
        attempt = transitions.registered(session, campaign, contact, now, provider)
        await session.flush()
    return attempt


# How long a registered call may take to start its audio stream (the carrier starts it within
# seconds of the call set-up) before its attempt is ended as never connected.
REGISTERED_STREAM_WAIT = timedelta(minutes=2)
NO_STREAM = "no_stream"


async def end_unconnected_registrations(
    sm: async_sessionmaker[AsyncSession], older_than: timedelta = REGISTERED_STREAM_WAIT
) -> int:
    """End the registered calls whose audio stream never started (nobody will say how they
    went): failed, with error code ``no_stream``. Returns how many."""
    now = utcnow()
    async with sm.begin() as session:
        attempts = list(
            await session.scalars(
                select(Attempt)
                .where(
                    Attempt.campaign_id.startswith(REGISTERED_PREFIX, autoescape=True),
                    Attempt.provider_call_id.is_(None),
                    Attempt.status.in_(AttemptStatus.LIVE),
                    Attempt.created_at < now - older_than,
                )
                .limit(500)
                .with_for_update(skip_locked=True)
            )
        )
        for attempt in attempts:
            attempt.error_code = NO_STREAM
            attempt.error_message = "the call's audio stream never started"
            await transitions.end_attempt(session, attempt, AttemptStatus.FAILED, now)
    return len(attempts)


def _callable_number(to: str, campaign: Campaign) -> Phone:
    """``to`` read as the campaign reads its contacts' numbers; CampaignError says why not."""
    number_types = number_types_of(campaign.allowed_number_types)
    try:
        return normalize(to, campaign.default_region, number_types)
    except PhoneRejected as exc:
        raise CampaignError(
            f"'to' is not a callable number ({exc.reason})",
            code="invalid_number",
            details=exc.details(),
        ) from exc


async def _create(
    session: AsyncSession,
    to: str,
    agent_id: str | None,
    from_number: str | None,
    dynamic_variables: dict[str, Any],
    call_at: datetime | str | None,
    campaign_id: str | None,
) -> Contact:
    if campaign_id:
        campaign = await get_campaign(session, campaign_id)
        if campaign.status in (CampaignStatus.COMPLETED, CampaignStatus.CANCELLED):
            raise CampaignError(
                f"campaign is {campaign.status}: it takes no more calls",
                code="conflict",
            )
    else:
        campaign = await _default_campaign(session, agent_id, from_number)
    phone = _callable_number(to, campaign)
    if await blocked_numbers(session, campaign.id, [phone.e164]):
        raise CampaignError("the number is on a do-not-call list", code="dnc")
    when: datetime | None
    try:
        when = (
            parse_call_at(call_at, phone.time_zones, campaign.timezone)
            if isinstance(call_at, str)
            else call_at
        )
    except BadCallAt as exc:
        raise CampaignError(str(exc), code="invalid_call_at") from exc
    now = utcnow()
    contact = _single_contact(
        campaign,
        phone,
        dynamic_variables,
        call_at=when,
        next_attempt_at=max(now, when) if when else now,
    )
    session.add(contact)
    emit(session, ContactsDue(campaign.id))
    await session.flush()
    return contact
