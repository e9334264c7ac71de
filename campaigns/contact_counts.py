"""How many contacts a campaign has in each state, and its finished ones by disposition: the one
count the REST API, the outbound-campaigns API and the dashboard all show."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import case, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.models import Contact, ContactState

# The disposition a finished contact without one is counted under.
UNKNOWN_DISPOSITION = "unknown"


@dataclass
class ContactCounts:
    contacts: int = 0
    # Waiting for a call; a state not known here counts as waiting (it is not finished).
    pending: int = 0
    in_progress: int = 0
    done: int = 0
    # Of the pending contacts, those never called yet (counted when asked for).
    never_called: int = 0
    # The campaign's dials: its contacts' attempts, each a call placed (or in the placing).
    # Read with the states from the same index, so a campaign's read does not grow with its
    # calls as a count of its attempts would.
    dials: int = 0
    # Finished contacts by their disposition, only the dispositions that occur.
    dispositions: dict[str, int] = field(default_factory=dict)


async def contact_counts(
    session: AsyncSession, campaign_ids: Sequence[str], *, never_called: bool = False
) -> dict[str, ContactCounts]:
    """Each campaign's counts (zeros for a campaign without contacts), in one grouped query.

    The query reads the index ix_contacts_counts alone, never the rows.
    """
    counts = {campaign_id: ContactCounts() for campaign_id in campaign_ids}
    if not counts:
        return counts
    uncalled = (
        func.sum(case((Contact.attempts_made == 0, 1), else_=0))
        if never_called
        else literal_column("0")
    )
    rows = await session.execute(
        select(
            Contact.campaign_id,
            Contact.state,
            Contact.disposition,
            func.count(),
            func.sum(Contact.attempts_made),
            uncalled,
        )
        .where(Contact.campaign_id.in_(list(counts)))
        .group_by(Contact.campaign_id, Contact.state, Contact.disposition)
    )
    for campaign_id, state, disposition, number, dials, uncalled_number in rows:
        entry = counts[campaign_id]
        entry.contacts += number
        entry.dials += int(dials or 0)
        if state == ContactState.DONE:
            entry.done += number
            key = disposition or UNKNOWN_DISPOSITION
            entry.dispositions[key] = entry.dispositions.get(key, 0) + number
        elif state == ContactState.IN_PROGRESS:
            entry.in_progress += number
        else:
            entry.pending += number
            entry.never_called += int(uncalled_number or 0)
    return counts
