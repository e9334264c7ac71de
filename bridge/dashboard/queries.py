"""What the dashboard reads: campaign summaries, live calls, calls per minute, contacts, attempts,
and a campaign's policy (in words), attention items and follow-up requests.

Every function takes an open session and runs a handful of grouped queries, so a refresh costs the
same whatever the campaign's size (apart from the contact search, which pages).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bridge.api.representations import attempt_json
from campaigns.api_tables import OutboundCampaign
from campaigns.clock import as_utc, iso_z, utcnow
from campaigns.contact_counts import contact_counts
from campaigns.follow_up_listing import recent_follow_ups
from campaigns.models import (
    Attempt,
    AttemptStatus,
    AttentionItem,
    Campaign,
    CampaignStatus,
    Contact,
    ContactState,
    Disposition,
)

MAX_CAMPAIGNS = 200
MAX_LIVE_CALLS = 50
# The campaign page shows this many attention items and follow-up requests, newest first.
MAX_PANEL_ROWS = 20
CHART_MINUTES = 30
# What a number looks like when people type it: digits, spaces, brackets, dots, dashes, a plus.
_PHONE_LIKE = re.compile(r"[\d\s()+.\-]+")
ACTIVE = (CampaignStatus.SCHEDULED, CampaignStatus.RUNNING, CampaignStatus.PAUSED)
ENDED = (CampaignStatus.COMPLETED, CampaignStatus.CANCELLED)


async def _counts(session: AsyncSession, ids: list[str]) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    counts = {
        campaign_id: {
            "contacts": found.contacts,
            "done": found.done,
            "pending": found.pending,
            "in_progress": found.in_progress,
            # Dispositions beyond the core five (dnc, expired, cancelled, ...) show up as they come.
            "dispositions": {**dict.fromkeys(Disposition.ALL, 0), **found.dispositions},
        }
        for campaign_id, found in (await contact_counts(session, ids)).items()
    }
    next_calls = await session.execute(
        select(Contact.campaign_id, func.min(Contact.next_attempt_at))
        .where(Contact.campaign_id.in_(ids), Contact.state == ContactState.PENDING)
        .group_by(Contact.campaign_id)
    )
    for campaign_id, at in next_calls:
        counts[campaign_id]["next_attempt_at"] = at
    live = await session.execute(
        select(Attempt.campaign_id, func.count())
        .where(Attempt.campaign_id.in_(ids), Attempt.status.in_(AttemptStatus.LIVE))
        .group_by(Attempt.campaign_id)
    )
    for campaign_id, n in live:
        counts[campaign_id]["live_calls"] = n
    return counts


def _summary(campaign: Campaign, counts: dict[str, Any]) -> dict[str, Any]:
    next_at = counts.pop("next_attempt_at", None)
    counts.setdefault("live_calls", 0)
    if campaign.status in ACTIVE and next_at is not None:
        # Contacts due before the start are released at the start.
        start = campaign.start_at if campaign.status == CampaignStatus.SCHEDULED else None
        next_call = max(as_utc(next_at), as_utc(start)) if start else next_at  # type: ignore[type-var]
    else:
        next_call = None
    return {
        "id": campaign.id,
        "name": campaign.name,
        "status": campaign.status,
        "agent_id": campaign.agent_id,
        "from_number": campaign.from_number,
        "concurrency": campaign.concurrency,
        "cps": campaign.cps,
        "max_attempts": campaign.max_attempts,
        "created_at": iso_z(campaign.created_at),
        "started_at": iso_z(campaign.started_at),
        "completed_at": iso_z(campaign.completed_at),
        "start_at": iso_z(campaign.start_at),
        "next_call_at": iso_z(next_call) if campaign.status != CampaignStatus.PAUSED else None,
        "counts": counts,
    }


async def campaign_summaries(session: AsyncSession, limit: int = MAX_CAMPAIGNS) -> dict[str, Any]:
    campaigns = list(
        await session.scalars(
            select(Campaign).order_by(Campaign.created_at.desc(), Campaign.id.desc()).limit(limit)
        )
    )
    total = await session.scalar(select(func.count()).select_from(Campaign))
    counts = await _counts(session, [c.id for c in campaigns])
    return {
        "campaigns": [_summary(c, counts[c.id]) for c in campaigns],
        "total": total,
    }


async def campaign_summary(session: AsyncSession, campaign: Campaign) -> dict[str, Any]:
    counts = await _counts(session, [campaign.id])
    return _summary(campaign, counts[campaign.id])


async def live_calls(session: AsyncSession, campaign_id: str) -> list[dict[str, Any]]:
    attempts = await session.scalars(
        select(Attempt)
        .where(Attempt.campaign_id == campaign_id, Attempt.status.in_(AttemptStatus.LIVE))
        .order_by(Attempt.created_at, Attempt.id)
        .limit(MAX_LIVE_CALLS)
    )
    return [
        {
            "id": a.id,
            "contact_id": a.contact_id,
            "phone_number": a.phone_number,
            "number": a.number,
            "direction": a.direction,
            "status": a.status,
            "answered_by": a.answered_by,
            "since": iso_z(a.answered_at or a.dialed_at or a.created_at),
        }
        for a in attempts
    ]


def _minute(session: AsyncSession, column: Any) -> ColumnElement[Any]:
    if session.bind.dialect.name == "postgresql":
        return func.to_char(func.date_trunc("minute", column), 'YYYY-MM-DD"T"HH24:MI')
    # SQLite keeps UTC timestamps as "YYYY-MM-DD HH:MM:SS.ffffff" text.
    return func.strftime("%Y-%m-%dT%H:%M", column)


async def calls_per_minute(
    session: AsyncSession, campaign: Campaign, minutes: int = CHART_MINUTES
) -> dict[str, Any]:
    """Dials per minute over the last ``minutes`` minutes of the campaign's activity."""
    if campaign.status == CampaignStatus.RUNNING:
        end = utcnow()
    else:
        last = await session.scalar(
            select(func.max(Attempt.dialed_at)).where(Attempt.campaign_id == campaign.id)
        )
        end = as_utc(last) or utcnow()
    end = end.replace(second=0, microsecond=0)
    start = end - timedelta(minutes=minutes - 1)
    bucket = _minute(session, Attempt.dialed_at)
    rows = await session.execute(
        select(bucket, func.count())
        .where(Attempt.campaign_id == campaign.id, Attempt.dialed_at >= start)
        .group_by(bucket)
    )
    found = {str(label): n for label, n in rows}
    series = []
    for i in range(minutes):
        at = start + timedelta(minutes=i)
        series.append({"minute": iso_z(at), "calls": found.get(at.strftime("%Y-%m-%dT%H:%M"), 0)})
    return {"minutes": series}


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def contact_filters(
    campaign_id: str, query: str, disposition: str, state: str
) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [Contact.campaign_id == campaign_id]
    if disposition:
        where.append(Contact.disposition == disposition)
    if state:
        where.append(Contact.state == state)
    query = query.strip()
    if query:
        matches = [Contact.external_id.ilike(f"%{_escape_like(query)}%", escape="\\")]
        digits = "".join(ch for ch in query if ch.isdigit())
        if digits and _PHONE_LIKE.fullmatch(query):
            # People type numbers with spaces, dashes or brackets; E.164 keeps the digits only.
            matches.append(Contact.phone_number.like(f"%{digits}%"))
        where.append(or_(*matches))
    return where


async def contacts_page(
    session: AsyncSession,
    campaign_id: str,
    *,
    query: str = "",
    disposition: str = "",
    state: str = "",
    page: int = 1,
    per_page: int = 25,
) -> tuple[int, list[dict[str, Any]]]:
    where = contact_filters(campaign_id, query, disposition, state)
    total = await session.scalar(select(func.count()).select_from(Contact).where(*where)) or 0
    contacts = list(
        await session.scalars(
            select(Contact)
            .where(*where)
            .order_by(Contact.row_number, Contact.id)
            .offset((page - 1) * per_page)
            .limit(per_page)
        )
    )
    last: dict[str, Attempt] = {}
    if contacts:
        attempts = await session.scalars(
            select(Attempt)
            .where(
                Attempt.contact_id.in_([c.id for c in contacts]),
                Attempt.status != AttemptStatus.NOT_PLACED,
            )
            .order_by(Attempt.number)
        )
        last = {a.contact_id: a for a in attempts}
    return total, [contact_json(c, last.get(c.id)) for c in contacts]


def contact_json(contact: Contact, last: Attempt | None = None) -> dict[str, Any]:
    return {
        "id": contact.id,
        "campaign_id": contact.campaign_id,
        "external_id": contact.external_id,
        "phone_number": contact.phone_number,
        "row_number": contact.row_number,
        "state": contact.state,
        "disposition": contact.disposition,
        "attempts": contact.attempts_made,
        "next_attempt_at": iso_z(contact.next_attempt_at) if contact.state == "pending" else None,
        "last_status": last.status if last else None,
        "answered_by": last.answered_by if last else None,
        "finished_at": iso_z(contact.finished_at),
        "dynamic_variables": contact.dynamic_variables or {},
    }


async def contact_attempts(session: AsyncSession, contact: Contact) -> list[dict[str, Any]]:
    attempts = await session.scalars(
        select(Attempt)
        .where(Attempt.contact_id == contact.id)
        .order_by(Attempt.number, Attempt.created_at)
    )
    return [attempt_json(a, detail=False) for a in attempts]


async def campaign_view(session: AsyncSession, campaign: Campaign) -> dict[str, Any]:
    """Everything the campaign page shows live, in one document."""
    body = await campaign_summary(session, campaign)
    body["live_calls"] = await live_calls(session, campaign.id)
    body["calls_per_minute"] = await calls_per_minute(session, campaign)
    body["policy"] = policy_json(campaign)
    # Outbound campaigns' attention items can be resolved without resuming (their API's resolve).
    body["outbound_campaign"] = await session.get(OutboundCampaign, campaign.id) is not None
    body["attention"] = await attention_items(session, campaign)
    body["follow_ups"] = await follow_ups(session, campaign.id)
    return body


WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
PLACEMENT_WORDS = {
    None: "at its start",
    "start": "at its start",
    "random": "at a random time inside it",
}


def days_in_words(weekdays: list[int]) -> str:
    """Mon-Fri, Sat-Sun, Mon, Wed, Fri, Every day: runs of days as ranges."""
    days = sorted(set(weekdays))
    if len(days) == 7:
        return "Every day"
    runs: list[list[int]] = []
    for day in days:
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ", ".join(
        WEEKDAYS[run[0]] if len(run) == 1 else f"{WEEKDAYS[run[0]]}-{WEEKDAYS[run[-1]]}"
        for run in runs
    )


def windows_in_words(periods: list[Any] | None) -> list[str]:
    """One line per set of days: "Mon-Fri 09:00-12:00, 13:00-17:00"."""
    if not periods:
        return ["Any time of day"]
    by_days: dict[tuple[int, ...], list[str]] = {}
    for period in periods:
        days = tuple(sorted(set(period["weekdays"])))
        by_days.setdefault(days, []).append(f"{period['start']}-{period['end']}")
    return [f"{days_in_words(list(days))} {', '.join(spans)}" for days, spans in by_days.items()]


def _calls(count: int) -> str:
    return f"{count} call" if count == 1 else f"{count} calls"


def _duration(seconds: int) -> str:
    if seconds and seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds and seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def policy_json(campaign: Campaign) -> dict[str, Any]:
    """What the campaign's calls obey, as stored on the campaign (whatever API created it),
    with the same facts in words for the page."""
    zone_words = (
        "Read in each recipient's own time zone (a number in several zones is called only when "
        f"all of them are inside); numbers without a zone of their own use {campaign.timezone}."
    )
    if campaign.rule_set == "us_tcpa":
        zone_words += " US TCPA hours (08:00-21:00 local) and state rules apply as well."
    retry_words = [
        f"At most {_calls(campaign.max_attempts)} per lead, "
        f"at least {_duration(campaign.retry_delay_seconds)} apart."
    ]
    if campaign.max_short_retries is not None:
        placement = PLACEMENT_WORDS.get(
            campaign.interval_placement,
            f"{_duration(campaign.rotate_step_seconds or 0)} later into it than the last call",
        )
        retry_words.append(
            f"At most {1 + campaign.max_short_retries} calls of a lead in one calling window; "
            f"the next goes to a later window, {placement}."
        )
    elif campaign.interval_placement is not None:
        placement = PLACEMENT_WORDS.get(
            campaign.interval_placement,
            f"{_duration(campaign.rotate_step_seconds or 0)} later into it than the last call",
        )
        retry_words.append(f"A call pushed to a later window lands {placement}.")
    then = (
        "then the lead ends"
        if campaign.end_after_number_failures
        else "then the lead keeps that number"
    )
    retry_words.append(
        f"After {campaign.max_failures_per_number} failed calls in a row on one number, the "
        f"lead's next number is called ({then} when it has no other)."
    )
    if campaign.max_attempts_per_day:
        retry_words.append(
            f"At most {_calls(campaign.max_attempts_per_day)} per lead per local day."
        )
    return {
        "timezone": campaign.timezone,
        "windows_read_in": "recipient",
        "calling_periods": campaign.calling_periods or [],
        "rule_set": campaign.rule_set,
        "retry": {
            "retry_delay_seconds": campaign.retry_delay_seconds,
            "max_total_calls": campaign.max_attempts,
            "max_short_retries": campaign.max_short_retries,
            "interval_placement": campaign.interval_placement,
            "rotate_step_seconds": campaign.rotate_step_seconds,
            "max_consecutive_failures_per_number": campaign.max_failures_per_number,
            "end_after_number_failures": campaign.end_after_number_failures,
            "max_attempts_per_day": campaign.max_attempts_per_day,
        },
        "words": {
            "windows": windows_in_words(campaign.calling_periods),
            "zone": zone_words,
            "retry": retry_words,
        },
    }


async def attention_items(
    session: AsyncSession, campaign: Campaign, limit: int = MAX_PANEL_ROWS
) -> dict[str, Any]:
    """The campaign's attention items, open ones first, then the newest."""
    rows = list(
        await session.scalars(
            select(AttentionItem)
            .where(AttentionItem.campaign_id == campaign.id)
            .order_by(
                AttentionItem.resolved_at.is_not(None),
                AttentionItem.created_at.desc(),
                AttentionItem.id.desc(),
            )
            .limit(limit + 1)
        )
    )
    return {
        "items": [
            {
                "id": item.id,
                "reason": item.kind,
                "code": item.code,
                "message": item.message,
                "remedy": item.remedy,
                # Resuming the campaign resolves it; a campaign that ended needs nothing more.
                # (Not "while paused": the campaign row may have been read before the pause
                # that committed with the item.)
                "open": item.resolved_at is None and campaign.status not in ENDED,
                "since": iso_z(item.created_at),
                "resolved_at": iso_z(item.resolved_at),
                "resolution": (item.details or {}).get("resolution"),
            }
            for item in rows[:limit]
        ],
        "more": len(rows) > limit,
    }


async def follow_ups(
    session: AsyncSession, campaign_id: str, limit: int = MAX_PANEL_ROWS
) -> dict[str, Any]:
    listing = await recent_follow_ups(session, campaign_id, limit)
    return {
        "items": [
            {
                "id": entry.id,
                "lead": {
                    "id": entry.lead_id,
                    "external_id": entry.lead_external_id,
                    "phone_number": entry.lead_phone_number,
                    "state": entry.lead_state,
                    "disposition": entry.lead_disposition,
                },
                "kind": entry.kind,
                "asked": entry.asked,
                "source": entry.source,
                "decision": entry.decision,
                "reason": entry.reason,
                "call_at": iso_z(entry.call_at),
                "phone_number": entry.phone_number,
                "requested_at": iso_z(entry.created_at),
                "applied_at": iso_z(entry.applied_at),
            }
            for entry in listing.entries
        ],
        "more": listing.more,
    }
