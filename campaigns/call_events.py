"""Provider events stored as received, then applied: one short transaction each, or one for a
group of them (bridge/webhooks/applier.py)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns.call_updates import CallUpdate
from campaigns.clock import utcnow
from campaigns.models import Attempt, CallEvent
from campaigns.sqlutil import insert_ignoring_conflicts, insert_rows_ignoring_conflicts
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

    A group costs three statements whatever its size, besides the rows its events change: its
    attempts are read (and locked) at once, its duplicates found at once, its raw events stored
    at once. Rows are locked in the order every transaction takes them, so that groups and
    single calls never wait for each other in a circle: the group's attempts first (by id), and
    the rows of the campaigns whose contacts it finished last.

    Raises `EventsRaced` (nothing kept) when another transaction stored one of the group's
    events meanwhile: applied again one by one, each is then found a duplicate or applied."""
    async with sm.begin() as session:
        complete_last(session)
        if len(updates) == 1:
            applied = [await record_in(session, updates[0])]
        else:
            applied = await _record_group(session, updates)
        await complete_deferred(session, utcnow())
        return applied


class EventsRaced(Exception):
    """An event of a group was stored by another transaction after the group looked."""


async def _record_group(session: AsyncSession, updates: Sequence[CallUpdate]) -> list[Applied]:
    attempts = _Attempts(await _lock_attempts(session, updates))
    seen = await _stored_keys(session, updates)
    rows: list[dict[str, Any]] = []
    applied: list[Applied] = []
    for update_ in updates:
        key = (update_.provider, update_.dedupe_key)
        if key in seen:
            applied.append(Applied("duplicate", update_.attempt_id))
            continue
        seen.add(key)
        attempt = attempts.owner(update_)
        rows.append(_event_row(update_, attempt))
        if attempt is None:
            _log_unknown(update_)
            applied.append(Applied("unknown"))
            continue
        ended = await apply_event(session, attempt, update_, update_.received_at)
        attempts.noted(attempt)
        applied.append(Applied("applied", attempt.id, ended, attempt.campaign_id))
    if rows:
        table = CallEvent.__table__
        stored = await session.execute(insert_rows_ignoring_conflicts(session, table), rows)  # type: ignore[arg-type]
        if len(stored.all()) != len(rows):
            # Applied above as new, yet stored meanwhile by another transaction (a provider's
            # retry answered by another writer): undo it all rather than apply an event twice.
            raise EventsRaced(f"{len(rows)} events, some stored meanwhile")
    return applied


async def _lock_attempts(session: AsyncSession, updates: Sequence[CallUpdate]) -> list[Attempt]:
    """Every attempt the events may name, by id or by call, locked in id order."""
    ids = {u.attempt_id for u in updates if u.attempt_id}
    call_ids = {u.provider_call_id for u in updates}
    return list(
        await session.scalars(
            select(Attempt)
            .where(or_(Attempt.id.in_(ids), Attempt.provider_call_id.in_(call_ids)))
            .order_by(Attempt.id)
            .with_for_update()
        )
    )


async def _stored_keys(
    session: AsyncSession, updates: Sequence[CallUpdate]
) -> set[tuple[str, str]]:
    """The group's events stored before (by an earlier callback, or a provider's retry).

    The attempts are locked first: an event for one of them stored by another transaction was
    committed before this one got the lock, so it is seen here."""
    providers = {u.provider for u in updates}
    keys = {u.dedupe_key for u in updates}
    rows = await session.execute(
        select(CallEvent.provider, CallEvent.dedupe_key).where(
            CallEvent.provider.in_(providers), CallEvent.dedupe_key.in_(keys)
        )
    )
    return {(provider, key) for provider, key in rows}


class _Attempts:
    """The attempts events may name, and which one each event is applied to.

    An event names its attempt (the id signed into its callback URL) or only its call. A named
    attempt that has another call, or none while another attempt has this call, is not the
    event's: a signed URL replayed with another call's id. In a group the lookup reflects the
    events applied before: an attempt that has just taken its call's id (a callback that beat the
    create's answer) is found by it."""

    def __init__(self, attempts: list[Attempt]) -> None:
        self._by_id = {a.id: a for a in attempts}
        self._by_call = {a.provider_call_id: a for a in attempts if a.provider_call_id}

    def owner(self, update_: CallUpdate) -> Attempt | None:
        attempt = self._by_id.get(update_.attempt_id) if update_.attempt_id else None
        if attempt is not None:
            if attempt.provider_call_id not in (None, update_.provider_call_id):
                log.warning("call event names attempt %s but a different call", attempt.id)
                return None
            if (
                attempt.provider_call_id is None
                and not update_.stand_in_call_id
                and update_.provider_call_id in self._by_call
            ):
                log.warning("call event names attempt %s but another attempt's call", attempt.id)
                return None
            return attempt
        return self._by_call.get(update_.provider_call_id)

    def noted(self, attempt: Attempt) -> None:
        if attempt.provider_call_id:
            self._by_call.setdefault(attempt.provider_call_id, attempt)


def _event_row(update_: CallUpdate, attempt: Attempt | None) -> dict[str, Any]:
    return {
        "provider": update_.provider,
        "kind": update_.kind,
        "dedupe_key": update_.dedupe_key,
        "provider_call_id": update_.provider_call_id,
        "attempt_id": attempt.id if attempt is not None else update_.attempt_id,
        "payload": update_.raw,
        "received_at": update_.received_at,
        "applied": attempt is not None,
    }


def _log_unknown(update_: CallUpdate) -> None:
    log.warning(
        "call event for an unknown call %s (%s) stored, not applied",
        update_.provider_call_id,
        update_.kind,
    )


async def record_in(session: AsyncSession, update_: CallUpdate) -> Applied:
    """Store one provider event and apply it, inside the caller's transaction."""
    # The attempt is found (and locked) first, so the raw event is stored once, already
    # marked with what it was applied to: one statement fewer than storing then marking it.
    attempt = _Attempts(await _lock_attempts(session, [update_])).owner(update_)
    stored = await session.execute(
        insert_ignoring_conflicts(
            session,
            CallEvent.__table__,  # type: ignore[arg-type]
            _event_row(update_, attempt),
        )
    )
    if stored.scalar_one_or_none() is None:
        return Applied("duplicate", update_.attempt_id)
    if attempt is None:
        _log_unknown(update_)
        return Applied("unknown")
    ended = await apply_event(session, attempt, update_, update_.received_at)
    return Applied("applied", attempt.id, ended, attempt.campaign_id)
