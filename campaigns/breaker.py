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
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from campaigns.clock import utcnow
from campaigns.events import AttemptEnded, EventBus
from campaigns.failures import ErrorClass
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


# What is wrong, for each class of account-level failure (campaigns.failures.ErrorClass). How to
# fix it depends on the provider: its adapter says (Remedies); GENERIC_FIX when it says nothing.
_DESTINATIONS = (
    "The provider account's geographic permissions do not allow calls to these destinations."
)
DIAGNOSES: dict[str, str] = {
    ErrorClass.CREDENTIALS_REFUSED: (
        "The provider refused the service's credentials (authentication failed)."
    ),
    ErrorClass.CALLER_ID_NOT_OWNED: (
        "The campaign's caller id {from_number} is not verified or bought on the provider "
        "account, so every call from it is refused."
    ),
    ErrorClass.CALLER_ID_INVALID: (
        "The campaign's caller id {from_number} is not a valid phone number."
    ),
    ErrorClass.DESTINATION_REFUSED: _DESTINATIONS,
    ErrorClass.DESTINATION_NOT_ENABLED: _DESTINATIONS,
    ErrorClass.TRIAL_ACCOUNT: (
        "The provider account is a trial account, which may only call verified numbers."
    ),
}
GENERIC_FIX = "Fix the provider account's settings, then resume the campaign."
# How to fix each class of failure, in the provider's own terms: {from_number} is filled in.
Remedies = Mapping[str, str]


def install(events: EventBus, remedies: Remedies | None = None) -> None:
    """Check every transaction that ends attempts, inside that transaction; ``remedies`` are the
    provider's how-to-fix texts."""
    fixes = dict(remedies or {})
    events.before_commit.append(lambda session, committed: check(session, committed, fixes))


def check(session: Session, events: list[Any], remedies: Remedies | None = None) -> None:
    failing = {
        e.campaign_id
        for e in events
        if isinstance(e, AttemptEnded) and e.status == AttemptStatus.FAILED
    }
    for campaign_id in sorted(failing):
        _check_campaign(session, campaign_id, remedies or {})


def _check_campaign(session: Session, campaign_id: str, remedies: Remedies) -> None:
    # Locked and re-read: two transactions ending failed calls at once must not both trip it.
    campaign = session.get(Campaign, campaign_id, with_for_update=True, populate_existing=True)
    if campaign is None or campaign.status != CampaignStatus.RUNNING:
        return
    since = session.scalar(
        select(func.max(AttentionItem.created_at)).where(
            AttentionItem.campaign_id == campaign_id, AttentionItem.kind == KIND
        )
    )
    query = select(Attempt.error_class, Attempt.error_code).where(
        Attempt.campaign_id == campaign_id,
        Attempt.status.in_(AttemptStatus.TERMINAL - {AttemptStatus.NOT_PLACED}),
        Attempt.ended_at.is_not(None),
    )
    if since is not None:
        query = query.where(Attempt.created_at > since)
    ended = list(session.execute(query.order_by(Attempt.ended_at.desc()).limit(WINDOW)))
    if len(ended) < MIN_ENDED:
        return
    # Counted per provider code: the message names the code that failed the calls.
    counted = Counter(
        (error_class, code) for error_class, code in ended if error_class in DIAGNOSES
    ).most_common(1)
    if not counted:
        return
    (error_class, code), failed = counted[0]
    if failed < TRIP_SHARE * len(ended):
        return
    fix = remedies.get(error_class, GENERIC_FIX)
    trip(session, campaign, error_class, code, fix, failed, len(ended), utcnow())


def trip(
    session: Session,
    campaign: Campaign,
    error_class: str,
    code: str,
    fix: str,
    failed: int,
    looked_at: int,
    now: datetime,
) -> AttentionItem:
    from_number = campaign.from_number or "(the default caller id)"
    message = (
        f"Campaign paused: {failed} of its last {looked_at} calls failed with provider error "
        f"{code}. " + DIAGNOSES[error_class].format(from_number=from_number)
    )
    item = AttentionItem(
        id=new_id("atn"),
        campaign_id=campaign.id,
        kind=KIND,
        code=code,
        message=message,
        remedy=fix.format(from_number=from_number),
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
