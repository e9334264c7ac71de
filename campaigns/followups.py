"""Follow-ups a person asks for during a call: a callback at a time they name, a call on another
number, or never to be called again.

A request is checked when it is made, so the agent can tell the person at once whether it will
be honoured: a callback's time is read in the person's own zone and must fall inside the calling
windows (every candidate zone of the number, callbridge's rule), before the campaign's end and
within the campaign's caps; a redirect's number is checked as an imported one is. A stop puts
the number on the do-not-call list at once.

What the request does to the contact waits for the call's end when the call is still live (the
attempt's settlement takes the request instead of the retry policy); a request reported after
the call ended takes effect at once. A honoured callback makes the contact's next call due at
the instant named; a redirect makes it go to the new number, in the next opening of its window;
a refused request ends the contact with the refusal's disposition (campaigns.follow_up_steps says
which step, campaigns.transitions carries it out).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns import dnc, policy, transitions
from campaigns.clock import BadInstant, parse_instant
from campaigns.follow_up_steps import (
    CALLBACK,
    KINDS,
    REDIRECT,
    STOP,
    Decision,
    next_step,
)
from campaigns.ids import new_id
from campaigns.models import (
    Attempt,
    AttemptStatus,
    Campaign,
    Contact,
    ContactState,
    FollowUpRequest,
    FollowUpSettings,
)
from campaigns.phones import DEFAULT_NUMBER_TYPES, PhoneRejected, mask, normalize
from campaigns.sqlutil import record_once
from campaigns.windows import is_open, zone

log = logging.getLogger(__name__)

# Where a request came from: the agent's tool during the call, or the report after it.
LIVE_CALL = "live_call"
REPORT = "report"

# The variables follow-up calls may be given about the call before (FollowUpSettings.context).
CALL_TYPE = "campaign__call_type"
PREVIOUS_CONVERSATION_ID = "campaign__previous_conversation_id"
PREVIOUS_SUMMARY = "campaign__previous_summary"
PREVIOUS_TRANSCRIPT = "campaign__previous_transcript"
CONTEXT = {
    "call_type": CALL_TYPE,
    "previous_conversation_id": PREVIOUS_CONVERSATION_ID,
    "previous_summary": PREVIOUS_SUMMARY,
    "previous_transcript": PREVIOUS_TRANSCRIPT,
}
# A call's type, as follow-up calls are told it.
INITIAL = "initial"
RETRY = "retry"


class FollowUpError(ValueError):
    """A request that names no call of a campaign, or no kind of follow-up."""


@dataclass(frozen=True)
class Outcome:
    """What became of a request, for the agent to tell the person."""

    request_id: str
    kind: str
    decision: str
    reason: str | None
    call_at: datetime | None
    phone_number: str | None
    # The zone the callback time was read in.
    zone: str | None

    @property
    def honoured(self) -> bool:
        return self.decision in Decision.QUEUED or self.decision == Decision.DO_NOT_CALL


async def settings_for(session: AsyncSession, campaign_id: str) -> FollowUpSettings:
    """The campaign's settings; a campaign without any has no caps and reads no report items."""
    found = await session.get(FollowUpSettings, campaign_id)
    return found if found is not None else FollowUpSettings(campaign_id=campaign_id, context=[])


async def request(
    sm: async_sessionmaker[AsyncSession],
    attempt_id: str,
    kind: str,
    asked: str,
    *,
    source: str,
    now: datetime,
) -> Outcome:
    """Record and decide a request made in the call ``attempt_id``. Asked again for the same
    call and kind (the tool and the report, or a report delivered twice), it answers the first
    decision. Raises FollowUpError for an unknown call or kind."""
    if kind not in KINDS:
        raise FollowUpError(f"no follow-up of kind {kind!r}")

    async def recorded(session: AsyncSession) -> Outcome:
        existing = await session.scalar(
            select(FollowUpRequest).where(
                FollowUpRequest.attempt_id == attempt_id, FollowUpRequest.kind == kind
            )
        )
        if existing is None:
            raise FollowUpError(f"the follow-up for {attempt_id!r} could not be recorded")
        return _outcome(existing, None)

    # Asked twice at once, one request records it and the other reads its decision.
    return await record_once(
        sm, lambda session: _request_in(session, attempt_id, kind, asked, source, now), recorded
    )


async def _request_in(
    session: AsyncSession, attempt_id: str, kind: str, asked: str, source: str, now: datetime
) -> Outcome:
    # Locked in the state machine's order, the attempt and then its contact: the request's row
    # refers to both, and a status callback settling the call holds the attempt first.
    attempt = await _locked_attempt(session, attempt_id)
    if attempt is None:
        raise FollowUpError(f"no call {attempt_id!r}")
    existing = await session.scalar(
        select(FollowUpRequest).where(
            FollowUpRequest.attempt_id == attempt_id, FollowUpRequest.kind == kind
        )
    )
    if existing is not None:
        return _outcome(existing, None)
    contact = await session.scalar(
        select(Contact).where(Contact.id == attempt.contact_id).with_for_update()
    )
    # Then the campaign, as the state machine does when a contact finishes: the request's row
    # refers to it too, and taking it in that order waits for no one holding it out of turn.
    campaign = await session.scalar(
        select(Campaign).where(Campaign.id == attempt.campaign_id).with_for_update()
    )
    assert contact is not None and campaign is not None
    settings = await settings_for(session, campaign.id)
    row = FollowUpRequest(
        id=new_id("fu"),
        campaign_id=campaign.id,
        contact_id=contact.id,
        attempt_id=attempt.id,
        kind=kind,
        asked=str(asked)[:200],
        source=source,
        created_at=now,
    )
    read_in: str | None = None
    if kind == STOP:
        row.decision = Decision.DO_NOT_CALL
        # Listed at once: nothing may dial the number from this instant, whatever happens next.
        await dnc.add(session, contact.current_number, None, "asked not to be called again")
    elif kind == CALLBACK:
        read_in = await _decide_callback(session, campaign, contact, settings, row, now)
    else:
        await _decide_redirect(session, campaign, contact, settings, row)
    session.add(row)
    await session.flush()
    log.info(
        "follow-up %s asked in %s for %s: %s",
        kind,
        attempt.id,
        mask(contact.current_number),
        row.decision,
    )
    live = attempt.status not in AttemptStatus.TERMINAL
    if not (live and contact.state == ContactState.IN_PROGRESS):
        step = await next_step(session, campaign, contact, attempt, now)
        if step is not None:
            await transitions.follow_up(session, campaign, contact, step, now)
    return _outcome(row, read_in)


async def _locked_attempt(session: AsyncSession, attempt_id: str) -> Attempt | None:
    return await session.scalar(select(Attempt).where(Attempt.id == attempt_id).with_for_update())


def _outcome(row: FollowUpRequest, read_in: str | None) -> Outcome:
    return Outcome(
        request_id=row.id,
        kind=row.kind,
        decision=row.decision,
        reason=row.reason,
        call_at=row.call_at,
        phone_number=row.phone_number,
        zone=read_in,
    )


async def _honoured(session: AsyncSession, contact_id: str, decision: str) -> int:
    return int(
        await session.scalar(
            select(func.count()).where(
                FollowUpRequest.contact_id == contact_id, FollowUpRequest.decision == decision
            )
        )
        or 0
    )


def _out_of_calls(campaign: Campaign, contact: Contact, row: FollowUpRequest) -> bool:
    if contact.attempts_made < campaign.max_attempts:
        return False
    row.decision = Decision.ATTEMPT_CEILING
    row.reason = f"the lead has had its {campaign.max_attempts} calls"
    return True


async def _decide_callback(
    session: AsyncSession,
    campaign: Campaign,
    contact: Contact,
    settings: FollowUpSettings,
    row: FollowUpRequest,
    now: datetime,
) -> str:
    zones = policy.zones_for(campaign, contact)
    # A time without an offset is the person's own wall-clock time.
    read_in = zones[0]
    try:
        at = parse_instant(row.asked, zone(read_in))
    except BadInstant as exc:
        row.decision = Decision.CALLBACK_TIME_INVALID
        row.reason = str(exc)
        return read_in
    windows = policy.windows_for(campaign, contact.current_number)
    if at <= now:
        row.decision, row.reason = Decision.CALLBACK_TIME_INVALID, "the time has passed"
    elif campaign.end_at is not None and at >= campaign.end_at:
        row.decision, row.reason = Decision.CALLBACK_TIME_INVALID, "after the campaign's end"
    elif windows and not is_open(windows, zones, at):
        row.decision = Decision.CALLBACK_TIME_INVALID
        row.reason = "outside the calling hours in the person's time zone"
    elif settings.max_callbacks is not None and (
        await _honoured(session, contact.id, Decision.CALLBACK_QUEUED) >= settings.max_callbacks
    ):
        row.decision = Decision.CALLBACK_CEILING
        row.reason = f"the lead has had its {settings.max_callbacks} callback(s)"
    elif not _out_of_calls(campaign, contact, row):
        row.decision = Decision.CALLBACK_QUEUED
        row.call_at = at
    return read_in


async def _decide_redirect(
    session: AsyncSession,
    campaign: Campaign,
    contact: Contact,
    settings: FollowUpSettings,
    row: FollowUpRequest,
) -> None:
    types = campaign.allowed_number_types or DEFAULT_NUMBER_TYPES
    try:
        number = normalize(row.asked, campaign.default_region, types).e164
    except PhoneRejected as exc:
        row.decision = Decision.REDIRECT_NUMBER_INVALID
        row.reason = f"the number cannot be called ({exc.reason})"
        return
    if settings.max_redirects is not None and (
        await _honoured(session, contact.id, Decision.REDIRECT_QUEUED) >= settings.max_redirects
    ):
        row.decision = Decision.REDIRECT_CEILING
        row.reason = f"the lead has followed {settings.max_redirects} redirect(s)"
    elif not _out_of_calls(campaign, contact, row):
        row.decision = Decision.REDIRECT_QUEUED
        row.phone_number = number


# -- what later calls are given -------------------------------------------------------------


def copy_results(
    contact: Contact, results: dict[str, Any], mappings: dict[str, Any]
) -> dict[str, Any]:
    """Copy a report's results into the contact's variables for its later calls, as the
    campaign's mappings name them ({item: variable}). Returns what was copied."""
    copied = {
        str(variable): results[item]
        for item, variable in (mappings or {}).items()
        if item in results and results[item] is not None
    }
    if copied:
        contact.dynamic_variables = {**(contact.dynamic_variables or {}), **copied}
    return copied


async def call_type(session: AsyncSession, attempt: Attempt) -> tuple[str, Attempt | None]:
    """Why ``attempt`` was placed (initial, retry, callback or redirect), and the call before."""
    previous = await session.scalar(
        select(Attempt)
        .where(
            Attempt.contact_id == attempt.contact_id,
            Attempt.id != attempt.id,
            Attempt.created_at <= attempt.created_at,
            Attempt.status != AttemptStatus.NOT_PLACED,
        )
        .order_by(Attempt.created_at.desc(), Attempt.id.desc())
        .limit(1)
    )
    if previous is None:
        return INITIAL, None
    followed = await session.scalar(
        select(FollowUpRequest.kind)
        .where(
            FollowUpRequest.attempt_id == previous.id,
            FollowUpRequest.decision.in_(Decision.QUEUED),
        )
        # A redirect with a callback time is a callback to the new number.
        .order_by(FollowUpRequest.kind)
        .limit(1)
    )
    return (followed or RETRY), previous


async def call_variables(
    session: AsyncSession, attempt: Attempt, contact: Contact
) -> dict[str, Any]:
    """The contact's variables, plus what the campaign passes follow-up calls about the call
    before (its settings' context): nothing for a first call."""
    variables = dict(contact.dynamic_variables or {})
    settings = await session.get(FollowUpSettings, attempt.campaign_id)
    if settings is None or not settings.context:
        return variables
    kind, previous = await call_type(session, attempt)
    if previous is None:
        return variables
    values = {
        "call_type": kind,
        "previous_conversation_id": previous.conversation_id or "",
        "previous_summary": previous.transcript_summary or "",
        "previous_transcript": _transcript_text(previous.transcript or previous.live_transcript),
    }
    for name in settings.context:
        if name in CONTEXT:
            variables[CONTEXT[name]] = values[name]
    return variables


def _transcript_text(turns: list[Any] | None) -> str:
    lines = []
    for turn in turns or []:
        if isinstance(turn, dict) and turn.get("message"):
            lines.append(f"{turn.get('role', '')}: {turn['message']}")
    return "\n".join(lines)


# -- what the campaign's owner reads ---------------------------------------------------------


@dataclass
class Counts:
    requested: int = 0
    by_decision: dict[str, int] | None = None
    distinct_leads: int = 0


async def counts(session: AsyncSession, campaign_id: str) -> dict[str, Counts]:
    """Requests per kind: how many, by decision, and from how many contacts."""
    found = {kind: Counts(by_decision={}) for kind in KINDS}
    rows = await session.execute(
        select(FollowUpRequest.kind, FollowUpRequest.decision, func.count())
        .where(FollowUpRequest.campaign_id == campaign_id)
        .group_by(FollowUpRequest.kind, FollowUpRequest.decision)
    )
    for kind, decision, number in rows:
        entry = found[kind]
        entry.requested += number
        assert entry.by_decision is not None
        entry.by_decision[decision] = number
    leads = await session.execute(
        select(FollowUpRequest.kind, func.count(func.distinct(FollowUpRequest.contact_id)))
        .where(FollowUpRequest.campaign_id == campaign_id)
        .group_by(FollowUpRequest.kind)
    )
    for kind, number in leads:
        found[kind].distinct_leads = number
    return found


async def per_contact(session: AsyncSession, contact_ids: list[str]) -> dict[str, dict[str, int]]:
    """Honoured callbacks and redirects per contact: {contact: {kind: n}}."""
    if not contact_ids:
        return {}
    rows = await session.execute(
        select(FollowUpRequest.contact_id, FollowUpRequest.kind, func.count())
        .where(
            FollowUpRequest.contact_id.in_(contact_ids),
            FollowUpRequest.decision.in_(Decision.QUEUED),
        )
        .group_by(FollowUpRequest.contact_id, FollowUpRequest.kind)
    )
    found: dict[str, dict[str, int]] = {}
    for contact_id, kind, number in rows:
        found.setdefault(contact_id, {})[kind] = number
    return found


# -- from a conversation's report --------------------------------------------------------------


def _asks_to_stop(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "yes", "1")


async def from_report(
    sm: async_sessionmaker[AsyncSession],
    attempt_id: str,
    results: dict[str, Any],
    now: datetime,
) -> list[Outcome]:
    """Act on a conversation report's results ({item: value}): the items the campaign's
    settings name for a callback time, a redirect number and a stop become requests, and the
    mapped items are copied into the contact's variables. Returns the requests' outcomes."""
    async with sm.begin() as session:
        attempt = await _locked_attempt(session, attempt_id)
        if attempt is None:
            return []
        settings = await session.get(FollowUpSettings, attempt.campaign_id)
        if settings is None:
            return []
        if settings.mappings:
            contact = await session.get(Contact, attempt.contact_id, with_for_update=True)
            if contact is not None:
                copy_results(contact, results, settings.mappings)
        asked: list[tuple[str, str]] = []
        stop = results.get(settings.stop_item) if settings.stop_item else None
        if stop is not None and _asks_to_stop(stop):
            asked.append((STOP, ""))
        for kind, item in ((REDIRECT, settings.redirect_item), (CALLBACK, settings.callback_item)):
            value = results.get(item) if item else None
            if value is not None and str(value).strip():
                asked.append((kind, str(value).strip()))
    return [
        await request(sm, attempt_id, kind, text, source=REPORT, now=now) for kind, text in asked
    ]
