"""Calls back: a person calls a number a campaign dials from, and reaches its agent.

The caller is matched to the most recent contact with that number; the call becomes an inbound
attempt of that contact (`transitions.answer_inbound`), and the agent is given the contact's
variables plus what it needs to say why the person was called: the call type, and the id and
summary of the conversation before. A caller who matches no contact leaves nothing behind but
the raw call event.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import phonenumbers
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns import transitions
from campaigns.dnc import blocked_numbers
from campaigns.models import Attempt, CallEvent, Campaign, Contact, Direction
from campaigns.phones import mask
from campaigns.sqlutil import insert_ignoring_conflicts, record_once

log = logging.getLogger(__name__)

CALL_TYPE = "campaign__call_type"
PREVIOUS_CONVERSATION_ID = "campaign__previous_conversation_id"
PREVIOUS_SUMMARY = "campaign__previous_summary"
INBOUND_CALLBACK = "inbound_callback"
# What an unknown caller's agent is told: no contact, no context.
INBOUND_UNKNOWN = "inbound_unknown"
EVENT_KIND = "inbound"


@dataclass(frozen=True)
class InboundCall:
    """A call back that became an attempt of a known contact."""

    attempt_id: str
    campaign_id: str
    contact_id: str
    do_not_call: bool


def caller_number(raw: str) -> str | None:
    """The caller's number in E.164, or None for a withheld or unreadable one."""
    try:
        parsed = phonenumbers.parse(raw.strip(), None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


async def answer(
    sm: async_sessionmaker[AsyncSession],
    *,
    provider: str,
    call_id: str,
    caller: str,
    raw: dict[str, Any],
    now: datetime,
) -> InboundCall | None:
    """Record an incoming call; the attempt it became, or None for an unknown caller.

    Asked twice for one call (the provider retries its request), it answers the same attempt.
    """
    # The same call answered meanwhile by another request: what it stored is the answer.
    return await record_once(
        sm,
        lambda session: _answer_in(session, provider, call_id, caller, raw, now),
        lambda session: _known_call(session, call_id),
    )


async def _known_call(session: AsyncSession, call_id: str) -> InboundCall | None:
    attempt = await session.scalar(select(Attempt).where(Attempt.provider_call_id == call_id))
    if attempt is None or attempt.direction != Direction.INBOUND:
        return None
    return InboundCall(attempt.id, attempt.campaign_id, attempt.contact_id, do_not_call=False)


async def _answer_in(
    session: AsyncSession,
    provider: str,
    call_id: str,
    caller: str,
    raw: dict[str, Any],
    now: datetime,
) -> InboundCall | None:
    again = await session.scalar(select(Attempt.id).where(Attempt.provider_call_id == call_id))
    if again is not None:
        return await _known_call(session, call_id)
    number = caller_number(caller)
    contact = None
    if number is not None:
        contact = await session.scalar(
            select(Contact)
            .where(Contact.phone_number == number)
            .order_by(Contact.created_at.desc(), Contact.id.desc())
            .limit(1)
            .with_for_update()
        )
    found: InboundCall | None = None
    if contact is not None and number is not None:
        campaign = await session.get(Campaign, contact.campaign_id)
        assert campaign is not None
        blocked = bool(await blocked_numbers(session, campaign.id, [number]))
        last = await session.scalar(
            select(func.max(Attempt.number)).where(Attempt.contact_id == contact.id)
        )
        attempt = await transitions.answer_inbound(
            session,
            campaign,
            contact,
            provider=provider,
            call_id=call_id,
            phone_number=number,
            number=int(last or 0) + 1,
            do_not_call=blocked,
            now=now,
        )
        await session.flush()
        found = InboundCall(attempt.id, campaign.id, contact.id, do_not_call=blocked)
        log.info("call back from %s is attempt %s", mask(number), attempt.id)
    else:
        log.info("call from an unknown caller %s", mask(number) if number else "(withheld)")
    await session.execute(
        insert_ignoring_conflicts(
            session,
            CallEvent.__table__,  # type: ignore[arg-type]
            {
                "provider": provider,
                "kind": EVENT_KIND,
                "dedupe_key": f"{call_id}:{EVENT_KIND}",
                "provider_call_id": call_id,
                "attempt_id": found.attempt_id if found else None,
                "payload": raw,
                "received_at": now,
                "applied": found is not None,
            },
        )
    )
    return found


async def callback_variables(
    session: AsyncSession, attempt: Attempt, contact: Contact
) -> dict[str, Any]:
    """The agent's variables for a call back: the contact's, the call type, and the
    conversation before this call (empty strings when there was none)."""
    previous = await session.scalar(
        select(Attempt)
        .where(
            Attempt.contact_id == contact.id,
            Attempt.id != attempt.id,
            Attempt.created_at <= attempt.created_at,
            or_(Attempt.conversation_id.is_not(None), Attempt.transcript_summary.is_not(None)),
        )
        .order_by(Attempt.created_at.desc(), Attempt.id.desc())
        .limit(1)
    )
    return {
        **dict(contact.dynamic_variables or {}),
        CALL_TYPE: INBOUND_CALLBACK,
        PREVIOUS_CONVERSATION_ID: (previous.conversation_id if previous else None) or "",
        PREVIOUS_SUMMARY: (previous.transcript_summary if previous else None) or "",
    }
