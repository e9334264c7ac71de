"""Every change of a contact's state and of an attempt's status, in one place.

A contact is pending (waiting for its next_attempt_at), in_progress (an attempt is live) or done
(it has its final disposition). An attempt is dialing from its claim until the provider answers
the create, then follows the provider's statuses to a terminal one; an attempt the provider
never created ends not_placed, which does not count as an attempt; one the provider can neither
confirm nor deny ends failed as unconfirmed, which counts, and is not retried.

Provider events arrive out of order and twice. Folding them in is idempotent and monotonic: a
status only ever moves forward, and a terminal attempt never leaves its terminal state.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns import follow_up_steps, policy
from campaigns.call_updates import CallUpdate, provider_call_update
from campaigns.clock import utcnow
from campaigns.dialing import ProviderCall
from campaigns.events import (
    AttemptEnded,
    AttemptNotPlaced,
    CampaignCompleted,
    ContactFinished,
    ContactsDue,
    emit,
)
from campaigns.ids import new_id
from campaigns.models import (
    Answerer,
    Attempt,
    AttemptStatus,
    Campaign,
    CampaignStatus,
    Contact,
    ContactState,
    Direction,
    Disposition,
)
from campaigns.sqlutil import dialect_name

log = logging.getLogger(__name__)

_RANK = {
    AttemptStatus.DIALING: 0,
    AttemptStatus.QUEUED: 1,
    AttemptStatus.INITIATED: 2,
    AttemptStatus.RINGING: 3,
    AttemptStatus.IN_PROGRESS: 4,
}
_TERMINAL_RANK = 5


def rank(status: str) -> int:
    return _TERMINAL_RANK if status in AttemptStatus.TERMINAL else _RANK.get(status, 0)


def outcome_of(attempt: Attempt) -> str | None:
    """The attempt's result in campaign terms, or None while the call is live."""
    status = attempt.status
    if status == AttemptStatus.COMPLETED:
        if attempt.answerer in Answerer.NOT_A_PERSON:
            return Disposition.VOICEMAIL
        return Disposition.ANSWERED
    if status == AttemptStatus.BUSY:
        return Disposition.BUSY
    if status == AttemptStatus.NO_ANSWER:
        return Disposition.NO_ANSWER
    if status in (AttemptStatus.FAILED, AttemptStatus.CANCELED):
        return Disposition.FAILED
    return None


def apply_update(attempt: Attempt, update: CallUpdate) -> bool:
    """Fold one event into the attempt. Returns True when the attempt's outcome changed."""
    before = outcome_of(attempt)
    if attempt.provider_call_id is None and not update.stand_in_call_id:
        # The callback can beat the create response (or the create response was lost in a crash).
        attempt.provider_call_id = update.provider_call_id
    if update.answered_by:
        attempt.answered_by = update.answered_by
        attempt.answerer = update.answerer
    # Status callbacks carry a status; so do agent reports when the agent placed the call itself.
    if update.status:
        _apply_status(attempt, update)
    _apply_conversation(attempt, update)
    return outcome_of(attempt) != before


def _apply_conversation(attempt: Attempt, update: CallUpdate) -> None:
    if update.conversation_id and attempt.conversation_id is None:
        attempt.conversation_id = update.conversation_id
    if update.transcript is not None:
        attempt.transcript = update.transcript
    if update.transcript_summary is not None:
        attempt.transcript_summary = update.transcript_summary
    if update.call_successful is not None:
        attempt.call_successful = update.call_successful
    if update.data_collection is not None:
        attempt.data_collection = update.data_collection
    if update.conversation_seconds is not None:
        attempt.conversation_seconds = update.conversation_seconds


def _apply_status(attempt: Attempt, update: CallUpdate) -> None:
    assert update.status is not None
    if update.sequence is not None and update.sequence > attempt.last_sequence:
        attempt.last_sequence = update.sequence
    new_rank = rank(update.status)
    if attempt.status in AttemptStatus.TERMINAL or new_rank <= rank(attempt.status):
        _fill_terminal_details(attempt, update)
        return
    if update.status == AttemptStatus.IN_PROGRESS:
        attempt.answered_at = update.received_at
    attempt.status = update.status
    if new_rank == _TERMINAL_RANK:
        attempt.ended_at = update.received_at
        _fill_terminal_details(attempt, update)


def _fill_terminal_details(attempt: Attempt, update: CallUpdate) -> None:
    """Durations and codes only travel on terminal events; a late duplicate may still carry them."""
    if update.status not in AttemptStatus.TERMINAL:
        return
    if update.duration_seconds is not None and attempt.talk_seconds is None:
        attempt.talk_seconds = update.duration_seconds
    if update.sip_response_code is not None and attempt.sip_response_code is None:
        attempt.sip_response_code = update.sip_response_code
    if update.error_code and attempt.error_code is None:
        attempt.error_code = update.error_code
        attempt.error_class = update.error_class
        attempt.error_message = update.error_message
    if attempt.ring_seconds is None and attempt.dialed_at is not None:
        ring_end = attempt.answered_at or attempt.ended_at
        if ring_end is not None:
            attempt.ring_seconds = max(0, round((ring_end - attempt.dialed_at).total_seconds()))


async def apply_event(
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
    if attempt.direction == Direction.INBOUND and await _other_call_live(session, attempt):
        # The contact called back while the campaign's own call to them was live: that call
        # holds the contact and settles it.
        return
    if not first_time:
        # A late AMD result re-labels an ended call (answered -> voicemail); both are final.
        if contact.state == ContactState.DONE and contact.disposition != outcome:
            contact.disposition = outcome
        return
    if contact.state != ContactState.IN_PROGRESS:
        return
    campaign = await session.get(Campaign, attempt.campaign_id)
    assert campaign is not None
    step = await follow_up_steps.next_step(session, campaign, contact, attempt, now)
    if step is not None:
        # The person asked, during the call, for what happens next.
        await follow_up(session, campaign, contact, step, now)
        return
    dials = await _dial_times(session, campaign, contact)
    retry_as = Disposition.VOICEMAIL if outcome == Disposition.VOICEMAIL_LEFT else outcome
    policy.next_number_after_failure(campaign, contact, retry_as)
    step = policy.after_attempt(campaign, contact, retry_as, now, attempt.error_class, dials)
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


async def _other_call_live(session: AsyncSession, attempt: Attempt) -> bool:
    other = await session.scalar(
        select(Attempt.id)
        .where(
            Attempt.contact_id == attempt.contact_id,
            Attempt.id != attempt.id,
            Attempt.status.in_(AttemptStatus.LIVE),
        )
        .limit(1)
    )
    return other is not None


async def _dial_times(
    session: AsyncSession, campaign: Campaign, contact: Contact
) -> list[datetime]:
    """When the contact was dialled: only the caps per day / per 24 h and the calls per window
    need it."""
    if not (campaign.max_attempts_per_day or campaign.rule_set or policy.uses_windows(campaign)):
        return []
    rows = await session.scalars(
        select(Attempt.scheduled_at).where(
            Attempt.contact_id == contact.id,
            Attempt.status != AttemptStatus.NOT_PLACED,
            # A call back was not a dial of ours: it counts against no cap.
            Attempt.direction == Direction.OUTBOUND,
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


# session.info key: the campaigns whose completion a transaction checks at its end (see
# complete_last), instead of each time one of its contacts finishes.
_COMPLETE_LAST = "campaigns_completed_last"


def complete_last(session: AsyncSession) -> None:
    """Check campaign completion once, at the end of this transaction (complete_deferred).

    A transaction that applies the events of several calls locks their attempts first (and
    each contact as its event is applied); taking a campaign's row in the middle (a contact
    finished) and then another attempt would hold them in the opposite order to a single call's
    transaction (attempt, contact, campaign), and on PostgreSQL the two deadlock."""
    session.info[_COMPLETE_LAST] = {}


async def complete_deferred(session: AsyncSession, now: datetime) -> None:
    """The completion checks complete_last put off, the campaign rows locked last."""
    waiting: dict[str, Campaign] = session.info.pop(_COMPLETE_LAST, {})
    for campaign_id in sorted(waiting):
        await complete_if_finished(session, waiting[campaign_id], now)


async def complete_if_finished(session: AsyncSession, campaign: Campaign, now: datetime) -> bool:
    waiting = session.info.get(_COMPLETE_LAST)
    if waiting is not None:
        waiting[campaign.id] = campaign
        return False
    if campaign.schedule_cron:
        # A recurring campaign waits for its next firing: it is never done by itself.
        return False
    if campaign.status != CampaignStatus.RUNNING:
        return False
    # Most contacts that finish are not a campaign's last: that is seen without a lock, so that
    # calls ending side by side never queue on their campaign's row.
    if await has_open_contact(session, campaign.id):
        return False
    # None open: on PostgreSQL the row is taken and both looked at again under it. A stop (or
    # pause) committed meanwhile, whose cancelled contacts count as finished, must not be
    # overwritten by "completed"; a contact added meanwhile keeps the campaign open. (SQLite
    # writers already take turns: every write transaction begins IMMEDIATE.)
    # Two transactions that settle a campaign's last two contacts at once each see the other's
    # as open (READ COMMITTED) and neither completes it: housekeeping does, a moment later
    # (campaigns.lifecycle.complete_finished).
    if dialect_name(session) != "sqlite":
        status = await session.scalar(
            select(Campaign.status).where(Campaign.id == campaign.id).with_for_update()
        )
        if status != CampaignStatus.RUNNING or await has_open_contact(session, campaign.id):
            return False
    campaign.status = CampaignStatus.COMPLETED
    campaign.completed_at = now
    emit(session, CampaignCompleted(campaign.id))
    log.info("campaign %s completed", campaign.id)
    return True


async def has_open_contact(session: AsyncSession, campaign_id: str) -> bool:
    """True while a contact of the campaign waits for a call or is on one."""
    # Named states (not "!= done") let the (campaign_id, state, …) index answer with a seek; a
    # count would walk every finished contact, once per contact.
    found = await session.scalar(
        select(Contact.id)
        .where(
            Contact.campaign_id == campaign_id,
            Contact.state.in_((ContactState.PENDING, ContactState.IN_PROGRESS)),
        )
        .limit(1)
    )
    return found is not None


# --- the dial: claim, create, and what becomes of an attempt before any provider event ---------


def claim(
    session: AsyncSession,
    campaign: Campaign,
    contact: Contact,
    *,
    at: datetime,
    now: datetime,
    lease_expires_at: datetime,
    provider: str,
) -> Attempt:
    """A pending contact gets an attempt, dialing, committed before ``provider`` is asked."""
    return _dial(
        session,
        campaign,
        contact,
        provider=provider,
        status=AttemptStatus.DIALING,
        created_at=now,
        scheduled_at=at,
        lease_expires_at=lease_expires_at,
    )


def registered(
    session: AsyncSession, campaign: Campaign, contact: Contact, now: datetime, provider: str
) -> Attempt:
    """A call placed by someone else on ``provider``, registered with us as it is answered: its
    contact is in progress at once, with one live attempt whose call id comes with its audio
    stream."""
    return _dial(
        session,
        campaign,
        contact,
        provider=provider,
        status=AttemptStatus.IN_PROGRESS,
        created_at=now,
        scheduled_at=now,
        dialed_at=now,
        answered_at=now,
    )


def _dial(session: AsyncSession, campaign: Campaign, contact: Contact, **columns: Any) -> Attempt:
    """The contact's next dial: it counts against its attempts, and holds it in progress."""
    contact.state = ContactState.IN_PROGRESS
    contact.attempts_made += 1
    contact.next_attempt_at = None
    attempt = Attempt(
        id=new_id("att"),
        campaign_id=campaign.id,
        contact_id=contact.id,
        number=contact.attempts_made,
        phone_number=contact.current_number,
        **columns,
    )
    session.add(attempt)
    return attempt


async def answer_inbound(
    session: AsyncSession,
    campaign: Campaign,
    contact: Contact,
    *,
    provider: str,
    call_id: str,
    phone_number: str,
    number: int,
    do_not_call: bool,
    now: datetime,
) -> Attempt:
    """The contact called back and the call is being answered: an inbound attempt, live.

    A pending contact is held in progress by the call, so the campaign does not dial someone
    who is on the line with its agent; the call's end then settles it like any attempt (the
    campaign's policy says whether an answered call ends it). A caller on the do-not-call list
    is answered, but their contact is finished ``dnc`` at once: never called again. A contact
    already done, or with a call of the campaign live, is left as it is. The call back does
    not count as one of the contact's dials (``attempts_made``).
    """
    if contact.state == ContactState.PENDING:
        if do_not_call:
            finish_contact(session, contact, Disposition.DNC, now)
        else:
            contact.state = ContactState.IN_PROGRESS
            contact.next_attempt_at = None
    attempt = Attempt(
        id=new_id("att"),
        campaign_id=campaign.id,
        contact_id=contact.id,
        number=number,
        phone_number=phone_number,
        provider=provider,
        direction=Direction.INBOUND,
        provider_call_id=call_id,
        status=AttemptStatus.IN_PROGRESS,
        created_at=now,
        scheduled_at=now,
        dialed_at=now,
        answered_at=now,
    )
    session.add(attempt)
    if contact.state == ContactState.DONE:
        await session.flush()
        await complete_if_finished(session, campaign, now)
    return attempt


def placed(attempt: Attempt, call_id: str, sent_at: datetime) -> None:
    """The provider created the call. A callback may have moved the attempt on already."""
    if attempt.provider_call_id is None:
        attempt.provider_call_id = call_id
    if attempt.status == AttemptStatus.DIALING:
        attempt.status = AttemptStatus.QUEUED
    attempt.dialed_at = attempt.dialed_at or sent_at
    attempt.lease_expires_at = None


async def adopt(session: AsyncSession, attempt: Attempt, call: ProviderCall, now: datetime) -> None:
    """A create without a clear answer did make this call (found in the provider's list)."""
    attempt.provider_call_id = call.call_id
    attempt.dialed_at = attempt.dialed_at or call.created_at or now
    attempt.lease_expires_at = None
    attempt.status = AttemptStatus.QUEUED
    await apply_event(session, attempt, provider_call_update(call, now), now)


async def not_placed(
    session: AsyncSession,
    attempt: Attempt,
    retry_at: datetime,
    *,
    error_code: str | None = None,
    error_message: str | None = None,
) -> Contact | None:
    """Nothing was dialled for the attempt: it does not count, and its contact is pending again,
    due at ``retry_at``. Returns the contact."""
    attempt.status = AttemptStatus.NOT_PLACED
    attempt.ended_at = utcnow()
    attempt.lease_expires_at = None
    emit(session, AttemptNotPlaced(attempt.id, attempt.campaign_id, attempt.contact_id))
    if error_code is not None:
        attempt.error_code = error_code
        attempt.error_message = error_message
    contact = await session.get(Contact, attempt.contact_id, with_for_update=True)
    if contact is not None and contact.state == ContactState.IN_PROGRESS:
        contact.attempts_made -= 1
        contact.state = ContactState.PENDING
        contact.next_attempt_at = retry_at
    return contact


async def refused(
    session: AsyncSession,
    attempt: Attempt,
    code: str | None,
    message: str,
    now: datetime,
    error_class: str | None = None,
) -> None:
    """The provider refused the create for good: the attempt failed, and counts."""
    attempt.error_code = code
    attempt.error_class = error_class
    attempt.error_message = message[:500]
    attempt.lease_expires_at = None
    await end_attempt(session, attempt, AttemptStatus.FAILED, now)


UNCONFIRMED = "unconfirmed"
UNCONFIRMED_MESSAGE = "unconfirmed: the provider cannot say whether the call was placed"


async def unconfirmed(session: AsyncSession, attempt: Attempt, now: datetime) -> None:
    """A create without a clear answer, on a provider that cannot list its calls, and no report
    of the call came in time: the call may well have been made. The attempt failed and counts,
    and its contact is not dialled again from it (calling someone twice by mistake is the worse
    error); the contact ends failed, unless something else holds it already."""
    attempt.error_code = UNCONFIRMED
    attempt.error_message = UNCONFIRMED_MESSAGE
    attempt.lease_expires_at = None
    attempt.status = AttemptStatus.FAILED
    attempt.ended_at = now
    attempt.outcome = outcome_of(attempt)
    _emit_attempt_ended(session, attempt)
    contact = await session.scalar(
        select(Contact).where(Contact.id == attempt.contact_id).with_for_update()
    )
    if contact is None or contact.state != ContactState.IN_PROGRESS:
        return
    campaign = await session.get(Campaign, attempt.campaign_id)
    finish_contact(session, contact, Disposition.FAILED, now)
    if campaign is not None:
        await session.flush()
        await complete_if_finished(session, campaign, now)


def replan_after_close(
    session: AsyncSession, campaign: Campaign, contact: Contact, closed: datetime, now: datetime
) -> None:
    """Plan a contact whose dial could not be made before its window closed: the next opening
    from ``closed`` on, or ``expired`` when there is none (the campaign's end comes first).

    Caps need no second look: they held at the instant planned before, and a later instant
    only leaves past dials further behind.
    """
    planned = policy.plan(campaign, contact, closed)
    if planned is None:
        finish_contact(session, contact, Disposition.EXPIRED, now)
    else:
        contact.next_attempt_at = planned


async def follow_up(
    session: AsyncSession,
    campaign: Campaign,
    contact: Contact,
    step: follow_up_steps.FollowUpStep,
    now: datetime,
) -> None:
    """Carry out what the person asked for in a call (follow_up_steps), once that call is over:
    at its end, or at once for a request reported after it."""
    disposition = step.disposition
    if step.again:
        if step.number is not None:
            _move_to(contact, step.number)
        at = step.at or policy.plan(campaign, contact, now)
        if at is not None:
            contact.state = ContactState.PENDING
            contact.disposition = None
            contact.finished_at = None
            contact.next_attempt_at = at
            if campaign.status == CampaignStatus.COMPLETED:
                # The report came after the call's end had completed the campaign: it has work
                # again.
                campaign.status = CampaignStatus.RUNNING
                campaign.completed_at = None
            emit(session, ContactsDue(campaign.id))
            return
        disposition = Disposition.EXPIRED
    if disposition is None:
        return
    if contact.state == ContactState.DONE:
        # The call's end finished the contact already (the report came after it): relabelled.
        contact.disposition = disposition
        contact.finished_at = now
        return
    finish_contact(session, contact, disposition, now)
    await session.flush()
    await complete_if_finished(session, campaign, now)


def _move_to(contact: Contact, number: str) -> None:
    """The contact's next calls go to ``number``: one of its numbers, or a new last one."""
    alternates = list(contact.alternate_numbers or [])
    if number == contact.phone_number:
        contact.number_index = 0
    else:
        if number not in alternates:
            alternates.append(number)
            contact.alternate_numbers = alternates
        contact.number_index = alternates.index(number) + 1
    # A new number starts with no failures against it.
    contact.failures_on_number = 0


def reopen(session: AsyncSession, contact: Contact, now: datetime) -> None:
    """A finished contact is called again (a batch retried): pending, due now."""
    emit(session, ContactsDue(contact.campaign_id))
    contact.state = ContactState.PENDING
    contact.disposition = None
    contact.finished_at = None
    contact.next_attempt_at = now
