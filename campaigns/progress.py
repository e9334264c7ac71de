"""Applies provider events to attempts, contacts and campaigns, in one short transaction each."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns import policy
from campaigns.events import AttemptEnded, CampaignCompleted, ContactFinished, emit
from campaigns.models import (
    Attempt,
    AttemptStatus,
    CallEvent,
    Campaign,
    CampaignStatus,
    Contact,
    ContactState,
    Disposition,
)
from campaigns.outcomes import CallUpdate, apply_update, outcome_of
from campaigns.sqlutil import dialect_name, insert_ignoring_conflicts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Applied:
    """What an event did: ``duplicate`` and ``unknown`` events change no attempt."""

    result: str  # applied | duplicate | unknown
    attempt_id: str | None = None
    attempt_ended: bool = False
    campaign_id: str | None = None


async def record_event(sm: async_sessionmaker[AsyncSession], update_: CallUpdate) -> Applied:
    async with sm.begin() as session:
        return await record_in(session, update_)


async def record_events(
    sm: async_sessionmaker[AsyncSession], updates: Sequence[CallUpdate]
) -> list[Applied]:
    """Apply events in order in one transaction, each exactly as `record_event` would."""
    async with sm.begin() as session:
        return [await record_in(session, update_) for update_ in updates]


async def record_in(session: AsyncSession, update_: CallUpdate) -> Applied:
    """Store one provider event and apply it, inside the caller's transaction."""
    # The attempt is found (and locked) first, so the raw event is stored once, already
    # marked with what it was applied to: one statement fewer than storing then marking it.
    attempt = await _locked_attempt(session, update_)
    stored = await session.execute(
        insert_ignoring_conflicts(
            session,
            CallEvent.__table__,  # type: ignore[arg-type]
            {
                "provider": update_.provider,
                "kind": update_.kind,
                "dedupe_key": update_.dedupe_key,
                "provider_call_id": update_.provider_call_id,
                "attempt_id": attempt.id if attempt is not None else update_.attempt_id,
                "payload": update_.raw,
                "received_at": update_.received_at,
                "applied": attempt is not None,
            },
        )
    )
    if stored.scalar_one_or_none() is None:
        return Applied("duplicate", update_.attempt_id)
    if attempt is None:
        log.warning(
            "call event for an unknown call %s (%s) stored, not applied",
            update_.provider_call_id,
            update_.kind,
        )
        return Applied("unknown")
    ended = await apply_to_attempt(session, attempt, update_, update_.received_at)
    return Applied("applied", attempt.id, ended, attempt.campaign_id)


async def _locked_attempt(session: AsyncSession, update_: CallUpdate) -> Attempt | None:
    query = select(Attempt).with_for_update()
    if update_.attempt_id:
        attempt = await session.scalar(query.where(Attempt.id == update_.attempt_id))
        if attempt is not None and attempt.provider_call_id not in (None, update_.provider_call_id):
            # A signed URL for one attempt replayed with another call's id: not ours to apply.
            log.warning("call event names attempt %s but a different call", attempt.id)
            return None
        if attempt is not None and await _takes_anothers_call(session, attempt, update_):
            log.warning("call event names attempt %s but another attempt's call", attempt.id)
            return None
        if attempt is not None:
            return attempt
    return await session.scalar(query.where(Attempt.provider_call_id == update_.provider_call_id))


async def _takes_anothers_call(
    session: AsyncSession, attempt: Attempt, update_: CallUpdate
) -> bool:
    """True when the attempt, with no call id yet, would take one that another attempt has."""
    if attempt.provider_call_id is not None or update_.stand_in_call_id:
        return False
    owner = await session.scalar(
        select(Attempt.id).where(Attempt.provider_call_id == update_.provider_call_id)
    )
    return owner is not None


async def apply_to_attempt(
    session: AsyncSession, attempt: Attempt, update_: CallUpdate, now: datetime
) -> bool:
    """Apply an update to a locked attempt; settle the contact when the outcome changed.

    Returns True when the attempt has just ended (a concurrency slot is free).
    """
    was_live = attempt.status not in AttemptStatus.TERMINAL
    if not apply_update(attempt, update_):
        return False
    outcome = outcome_of(attempt)
    attempt.outcome = outcome
    ended = was_live and attempt.status in AttemptStatus.TERMINAL
    if ended:
        _emit_attempt_ended(session, attempt)
    if outcome is not None:
        await settle_contact(session, attempt, outcome, now, first_time=was_live)
    return ended


def _emit_attempt_ended(session: AsyncSession, attempt: Attempt) -> None:
    emit(
        session,
        AttemptEnded(
            attempt.id, attempt.campaign_id, attempt.contact_id, attempt.status, attempt.outcome
        ),
    )


async def end_attempt(session: AsyncSession, attempt: Attempt, status: str, now: datetime) -> None:
    """End an attempt that no provider event will end (the provider refused to create it)."""
    attempt.status = status
    attempt.ended_at = now
    attempt.outcome = outcome_of(attempt)
    _emit_attempt_ended(session, attempt)
    if attempt.outcome is not None:
        await settle_contact(session, attempt, attempt.outcome, now, first_time=True)


async def settle_contact(
    session: AsyncSession, attempt: Attempt, outcome: str, now: datetime, *, first_time: bool
) -> None:
    contact = await session.scalar(
        select(Contact).where(Contact.id == attempt.contact_id).with_for_update()
    )
    if contact is None:
        return
    if outcome == Disposition.VOICEMAIL and attempt.voicemail_action == "message_left":
        outcome = Disposition.VOICEMAIL_LEFT
    if not first_time:
        # A late AMD result re-labels an ended call (answered -> voicemail); both are final.
        if contact.state == ContactState.DONE and contact.disposition != outcome:
            contact.disposition = outcome
        return
    if contact.state != ContactState.IN_PROGRESS:
        return
    campaign = await session.get(Campaign, attempt.campaign_id)
    assert campaign is not None
    dials = await _dial_times(session, campaign, contact)
    retry_as = Disposition.VOICEMAIL if outcome == Disposition.VOICEMAIL_LEFT else outcome
    policy.next_number_after_failure(campaign, contact, retry_as)
    step = policy.after_attempt(campaign, contact, retry_as, now, attempt.error_code, dials)
    if isinstance(step, policy.Retry) and campaign.status == CampaignStatus.CANCELLED:
        # A call that was live when the campaign was cancelled ends it for this contact.
        step = policy.Final(retry_as)
    if isinstance(step, policy.Retry):
        contact.state = ContactState.PENDING
        contact.next_attempt_at = step.at
        return
    disposition = outcome if step.disposition == retry_as else step.disposition
    finish_contact(session, contact, disposition, now)
    await session.flush()
    await complete_if_finished(session, campaign, now)


async def _dial_times(
    session: AsyncSession, campaign: Campaign, contact: Contact
) -> list[datetime]:
    """When the contact was dialled: only the caps per day / per 24 h need it."""
    if not (campaign.max_attempts_per_day or campaign.rule_set):
        return []
    rows = await session.scalars(
        select(Attempt.scheduled_at).where(
            Attempt.contact_id == contact.id, Attempt.status != AttemptStatus.NOT_PLACED
        )
    )
    return list(rows)


def finish_contact(
    session: AsyncSession, contact: Contact, disposition: str, now: datetime
) -> None:
    """Give a contact its final disposition (the caller checks campaign completion)."""
    contact.state = ContactState.DONE
    contact.disposition = disposition
    contact.finished_at = now
    contact.next_attempt_at = None
    emit(session, ContactFinished(contact.id, contact.campaign_id, disposition))


async def complete_if_finished(session: AsyncSession, campaign: Campaign, now: datetime) -> bool:
    if campaign.schedule_cron:
        # A recurring campaign waits for its next firing: it is never done by itself.
        return False
    if campaign.status != CampaignStatus.RUNNING:
        return False
    # Two transactions settling a campaign's last contacts at once would each count the other's
    # contact as open (READ COMMITTED) and neither would complete it: they take turns on the
    # campaign row, so the later one counts after the earlier one committed. (SQLite writers
    # already take turns: every write transaction begins IMMEDIATE.)
    if dialect_name(session) != "sqlite":
        await session.execute(
            select(Campaign.id).where(Campaign.id == campaign.id).with_for_update()
        )
    # Is any contact still open? Named states (not "!= done") let the (campaign_id, state, …)
    # index answer with a seek; a count would walk every finished contact, once per contact.
    open_contact = await session.scalar(
        select(Contact.id)
        .where(
            Contact.campaign_id == campaign.id,
            Contact.state.in_((ContactState.PENDING, ContactState.IN_PROGRESS)),
        )
        .limit(1)
    )
    if open_contact is not None:
        return False
    campaign.status = CampaignStatus.COMPLETED
    campaign.completed_at = now
    emit(session, CampaignCompleted(campaign.id))
    log.info("campaign %s completed", campaign.id)
    return True
