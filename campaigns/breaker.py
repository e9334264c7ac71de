"""The circuit breaker: stop a campaign that is burning through its list for one fixable reason.

When most of a campaign's recent calls fail with the same account-level provider error (bad
credentials, a caller id the account may not use, missing geographic permissions), no contact can
succeed until someone fixes the account; dialling on only spends the contacts' attempts. The
campaign is paused in the very transaction that records the failure that tipped the balance, and
an attention item says what is wrong and how to fix it. Only attempts created after the latest
trip count, so a resumed campaign starts with a clean slate.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from campaigns.clock import utcnow
from campaigns.events import AttemptEnded, EventBus
from campaigns.ids import new_id
from campaigns.models import (
    Attempt,
    AttemptStatus,
    AttentionItem,
    Campaign,
    CampaignStatus,
)

log = logging.getLogger(__name__)

KIND = "circuit_breaker"
# The most recent ended attempts looked at, how many are needed, and the share that trips.
WINDOW = 10
MIN_ENDED = 5
TRIP_SHARE = 0.8


@dataclass(frozen=True)
class Diagnosis:
    what: str
    fix: str


_GEO = Diagnosis(
    "The provider account's geographic permissions do not allow calls to these destinations.",
    "Enable the destination countries in the Twilio console (Voice > Settings > Geo "
    "permissions), then resume the campaign.",
)
# Provider errors that say the account, not the contact, is the problem.
DIAGNOSES: dict[str, Diagnosis] = {
    "20003": Diagnosis(
        "The provider refused the service's credentials (authentication failed).",
        "Check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (a rotated or revoked auth token is the "
        "usual cause), restart the service with the right ones, then resume the campaign.",
    ),
    "21210": Diagnosis(
        "The campaign's caller id {from_number} is not verified or bought on the provider "
        "account, so every call from it is refused.",
        "Buy {from_number} or add it as a Verified Caller ID in the Twilio console, or set the "
        "campaign's from_number to a number the account owns, then resume the campaign.",
    ),
    "21212": Diagnosis(
        "The campaign's caller id {from_number} is not a valid phone number.",
        "Set the campaign's from_number to a number the account owns, in E.164 form, then "
        "resume the campaign.",
    ),
    "21215": _GEO,
    "13227": _GEO,
    "21219": Diagnosis(
        "The provider account is a trial account, which may only call verified numbers.",
        "Upgrade the Twilio account (or verify the numbers to call), then resume the campaign.",
    ),
}


def install(events: EventBus) -> None:
    """Check every transaction that ends attempts, inside that transaction."""
    events.before_commit.append(check)


def check(session: Session, events: list[Any]) -> None:
    failing = {
        e.campaign_id
        for e in events
        if isinstance(e, AttemptEnded) and e.status == AttemptStatus.FAILED
    }
    for campaign_id in sorted(failing):
        _check_campaign(session, campaign_id)


def _check_campaign(session: Session, campaign_id: str) -> None:
    # Locked and re-read: two transactions ending failed calls at once must not both trip it.
    campaign = session.get(Campaign, campaign_id, with_for_update=True, populate_existing=True)
    if campaign is None or campaign.status != CampaignStatus.RUNNING:
        return
    since = session.scalar(
        select(func.max(AttentionItem.created_at)).where(
            AttentionItem.campaign_id == campaign_id, AttentionItem.kind == KIND
        )
    )
    query = select(Attempt.error_code).where(
        Attempt.campaign_id == campaign_id,
        Attempt.status.in_(AttemptStatus.TERMINAL - {AttemptStatus.NOT_PLACED}),
        Attempt.ended_at.is_not(None),
    )
    if since is not None:
        query = query.where(Attempt.created_at > since)
    codes = list(session.scalars(query.order_by(Attempt.ended_at.desc()).limit(WINDOW)))
    if len(codes) < MIN_ENDED:
        return
    counted = Counter(code for code in codes if code in DIAGNOSES).most_common(1)
    if not counted:
        return
    code, failed = counted[0]
    if failed < TRIP_SHARE * len(codes):
        return
    trip(session, campaign, code, failed, len(codes), utcnow())


def trip(
    session: Session, campaign: Campaign, code: str, failed: int, looked_at: int, now: datetime
) -> AttentionItem:
    diagnosis = DIAGNOSES[code]
    from_number = campaign.from_number or "(the default caller id)"
    message = (
        f"Campaign paused: {failed} of its last {looked_at} calls failed with provider error "
        f"{code}. " + diagnosis.what.format(from_number=from_number)
    )
    item = AttentionItem(
        id=new_id("atn"),
        campaign_id=campaign.id,
        kind=KIND,
        code=code,
        message=message,
        remedy=diagnosis.fix.format(from_number=from_number),
        details={"failed": failed, "recent_calls": looked_at, "error_code": code},
        created_at=now,
    )
    campaign.status = CampaignStatus.PAUSED
    session.add(item)
    log.warning("campaign %s paused by the circuit breaker: %s", campaign.id, message)
    return item


def resolve(session: Session, campaign_id: str, now: datetime) -> None:
    """Close a campaign's open attention items (on resume: the operator says it is fixed)."""
    session.execute(
        update(AttentionItem)
        .where(AttentionItem.campaign_id == campaign_id, AttentionItem.resolved_at.is_(None))
        .values(resolved_at=now)
    )
