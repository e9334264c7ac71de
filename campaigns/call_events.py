"""Provider events stored as received, then applied: one short transaction each, or one for a
group of them (bridge/webhooks/applier.py)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns.call_updates import CallUpdate
from campaigns.clock import utcnow
from campaigns.models import Attempt, CallEvent
from campaigns.sqlutil import dialect_name, insert_ignoring_conflicts
from campaigns.transitions import apply_event, complete_deferred, complete_last

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
    """Apply events in order in one transaction, each exactly as `record_event` would.

    Rows are locked in the order every transaction takes them, so that groups and single calls
    never wait for each other in a circle: the group's attempts first (by id), and the rows of
    the campaigns whose contacts it finished last."""
    async with sm.begin() as session:
        await _lock_attempts(session, updates)
        complete_last(session)
        applied = [await record_in(session, update_) for update_ in updates]
        await complete_deferred(session, utcnow())
        return applied


async def _lock_attempts(session: AsyncSession, updates: Sequence[CallUpdate]) -> None:
    if len(updates) < 2 or dialect_name(session) == "sqlite":
        # One event takes one attempt; SQLite's writers take turns on the whole database.
        return
    ids = {u.attempt_id for u in updates if u.attempt_id}
    call_ids = {u.provider_call_id for u in updates}
    await session.execute(
        select(Attempt.id)
        .where(or_(Attempt.id.in_(ids), Attempt.provider_call_id.in_(call_ids)))
        .order_by(Attempt.id)
        .with_for_update()
    )


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
    ended = await apply_event(session, attempt, update_, update_.received_at)
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
