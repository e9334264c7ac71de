"""Do-not-call lists: one global (campaign_id NULL) and one per campaign.

Numbers are listed one by one (``add``) or many at a time (``add_many``, which a CSV import uses:
intake.dnc_file); every intake and dial asks ``blocked_numbers``.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.clock import utcnow
from campaigns.models import DncEntry
from campaigns.sqlutil import insert_ignoring_conflicts, insert_rows_ignoring_conflicts


def _scope(campaign_id: str | None):  # type: ignore[no-untyped-def]
    """The condition that selects one list: the global one for None, else the campaign's."""
    if campaign_id is None:
        return DncEntry.campaign_id.is_(None)
    return DncEntry.campaign_id == campaign_id


async def blocked_numbers(
    session: AsyncSession, campaign_id: str, numbers: Sequence[str]
) -> set[str]:
    """Which of ``numbers`` a campaign must not call (its own list or the global one)."""
    if not numbers:
        return set()
    rows = await session.scalars(
        select(DncEntry.phone_number).where(
            DncEntry.phone_number.in_(set(numbers)),
            or_(DncEntry.campaign_id.is_(None), DncEntry.campaign_id == campaign_id),
        )
    )
    return set(rows)


async def add(
    session: AsyncSession, phone_number: str, campaign_id: str | None, reason: str | None
) -> bool:
    """Add a number; False when it was listed already. Idempotent under concurrency."""
    if campaign_id is None:
        # NULLs never collide in a unique constraint: check the global list explicitly.
        existing = await session.scalar(
            select(DncEntry.id).where(DncEntry.phone_number == phone_number, _scope(None))
        )
        if existing is not None:
            return False
    inserted = await session.execute(
        insert_ignoring_conflicts(
            session,
            DncEntry.__table__,  # type: ignore[arg-type]
            {"phone_number": phone_number, "campaign_id": campaign_id, "reason": reason},
        )
    )
    return inserted.scalar_one_or_none() is not None


async def remove(session: AsyncSession, phone_number: str, campaign_id: str | None) -> bool:
    result = await session.execute(
        delete(DncEntry).where(DncEntry.phone_number == phone_number, _scope(campaign_id))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def add_many(
    session: AsyncSession, numbers: list[tuple[str, str | None]], campaign_id: str | None
) -> int:
    """Store the numbers not yet on the list; how many were added (repeats count once)."""
    first: dict[str, str | None] = {}
    for e164, reason in numbers:
        first.setdefault(e164, reason)
    listed = set(
        await session.scalars(
            select(DncEntry.phone_number).where(
                DncEntry.phone_number.in_(first), _scope(campaign_id)
            )
        )
    )
    now = utcnow()
    rows = [
        {"phone_number": e164, "campaign_id": campaign_id, "reason": reason, "created_at": now}
        for e164, reason in first.items()
        if e164 not in listed
    ]
    if not rows:
        return 0
    statement = insert_rows_ignoring_conflicts(session, DncEntry.__table__)  # type: ignore[arg-type]
    return len((await session.execute(statement, rows)).all())
