"""What a contact's follow-up requests decide for it when the call they were asked in is over.

campaigns.followups records and checks each request as it is made; this module reads the requests
of one call not yet applied and says what they make of the contact: finish it with a disposition,
or call it again at an instant (on another number for a redirect). campaigns.transitions carries
the step out, as it does every change of a contact's state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.models import (
    Attempt,
    Campaign,
    CampaignStatus,
    Contact,
    ContactState,
    Disposition,
    FollowUpRequest,
)

CALLBACK = "callback"
REDIRECT = "redirect"
STOP = "stop"
KINDS = (CALLBACK, REDIRECT, STOP)


class Decision:
    """What the campaign decided about a request."""

    CALLBACK_QUEUED = "callback_queued"
    REDIRECT_QUEUED = "redirect_queued"
    DO_NOT_CALL = "do_not_call"
    CALLBACK_TIME_INVALID = Disposition.CALLBACK_TIME_INVALID
    CALLBACK_CEILING = Disposition.CALLBACK_CEILING
    REDIRECT_NUMBER_INVALID = Disposition.REDIRECT_NUMBER_INVALID
    REDIRECT_CEILING = Disposition.REDIRECT_CEILING
    ATTEMPT_CEILING = Disposition.ATTEMPT_CEILING

    QUEUED = frozenset({CALLBACK_QUEUED, REDIRECT_QUEUED})


@dataclass(frozen=True)
class FollowUpStep:
    """The contact's next step: finished with ``disposition``, or called ``again`` at ``at`` (a
    callback's instant; None: when its calling hours next allow), on ``number`` when it moves to
    another one. Neither when the requests change nothing."""

    disposition: str | None = None
    again: bool = False
    at: datetime | None = None
    number: str | None = None


# The requests were taken, and leave the contact as it is.
UNCHANGED = FollowUpStep()


async def next_step(
    session: AsyncSession, campaign: Campaign, contact: Contact, attempt: Attempt, now: datetime
) -> FollowUpStep | None:
    """The step the requests made in ``attempt`` and not yet applied decide, and they are marked
    applied; None when there are none, or when they leave a contact still held by the call to
    the retry policy."""
    pending = list(
        await session.scalars(
            select(FollowUpRequest).where(
                FollowUpRequest.attempt_id == attempt.id, FollowUpRequest.applied_at.is_(None)
            )
        )
    )
    if not pending:
        return None
    for row in pending:
        row.applied_at = now
    if not _may_change(contact, campaign):
        # The contact was removed or cancelled since, or the campaign stopped: that stands (a
        # stop listed the number when it was asked). A contact still held by the call is
        # settled by the retry policy, which a stopped campaign ends.
        return None if contact.state == ContactState.IN_PROGRESS else UNCHANGED
    by_kind = {r.kind: r for r in pending}
    # A stop outweighs anything else asked in the same call; a refusal ends the lead.
    if STOP in by_kind:
        return FollowUpStep(disposition=Disposition.DNC)
    refused = [r for r in pending if r.decision not in Decision.QUEUED]
    if refused:
        return FollowUpStep(disposition=refused[0].decision)
    redirect = by_kind.get(REDIRECT)
    number = redirect.phone_number if redirect is not None else None
    callback = by_kind.get(CALLBACK)
    at = callback.call_at if callback is not None else None
    return FollowUpStep(again=True, at=at, number=number)


def _may_change(contact: Contact, campaign: Campaign) -> bool:
    if campaign.status == CampaignStatus.CANCELLED:
        return False
    return not (
        contact.state == ContactState.DONE
        and contact.disposition
        in (Disposition.REMOVED, Disposition.CANCELLED, Disposition.DNC, Disposition.EXPIRED)
    )
