"""Callbacks applied in a group (one transaction for whatever arrived meanwhile) do exactly what
each would do alone, in any mix of duplicates, unknown calls and callbacks that beat the create's
answer, and the group costs a few statements whatever its size."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns.call_events import record_event, record_events
from campaigns.call_updates import CallUpdate
from campaigns.clock import utcnow
from campaigns.ids import new_id
from campaigns.models import (
    Answerer,
    Attempt,
    AttemptStatus,
    CallEvent,
    Contact,
)
from tests.live_calls import campaign_on_calls

SM = async_sessionmaker[AsyncSession]


async def _live_calls(sm: SM, count: int, *, without_call_id: int = 0) -> list[Attempt]:
    _, attempts = await campaign_on_calls(
        sm, count, status=AttemptStatus.QUEUED, without_call_id=without_call_id
    )
    return attempts


def _update(call_id: str, status: str, sequence: int, attempt_id: str | None = None) -> CallUpdate:
    terminal = status == AttemptStatus.COMPLETED
    return CallUpdate(
        provider="twilio",
        provider_call_id=call_id,
        kind="status",
        received_at=utcnow(),
        raw={"CallSid": call_id, "CallStatus": status},
        attempt_id=attempt_id,
        status=status,
        sequence=sequence,
        answerer=Answerer.HUMAN if terminal else None,
        duration_seconds=30 if terminal else None,
    )


def _mixed_callbacks(attempts: list[Attempt], stray_call_id: str) -> list[CallUpdate]:
    """Every case a group meets, in one arrival order."""
    first, second, named = attempts
    first_id, second_id = str(first.provider_call_id), str(second.provider_call_id)
    named_call = f"CA{new_id('named')}"
    return [
        _update(first_id, AttemptStatus.RINGING, 1, first.id),
        # The provider sent it twice, and both copies arrived in the same group.
        _update(first_id, AttemptStatus.RINGING, 1, first.id),
        _update(first_id, AttemptStatus.IN_PROGRESS, 2, first.id),
        # Stored already (below) by an earlier callback.
        _update(second_id, AttemptStatus.RINGING, 1, second.id),
        _update(second_id, AttemptStatus.COMPLETED, 3, second.id),
        # A call nobody here placed.
        _update(stray_call_id, AttemptStatus.RINGING, 1),
        # A callback that beats the create's answer names its attempt; the next one, without
        # the attempt's id, is found by the call id the first gave it.
        _update(named_call, AttemptStatus.RINGING, 1, named.id),
        _update(named_call, AttemptStatus.COMPLETED, 2),
        # A signed URL of the first call replayed with another call's id: not the first's.
        _update(second_id, AttemptStatus.COMPLETED, 9, first.id),
        _update(first_id, AttemptStatus.COMPLETED, 3, first.id),
    ]


async def _state(sm: SM, attempts: list[Attempt]) -> list[Any]:
    """What the callbacks left, comparable between two runs on different calls."""
    async with sm() as session:
        rows = []
        for attempt in attempts:
            stored = await session.get(Attempt, attempt.id, populate_existing=True)
            contact = await session.get(Contact, attempt.contact_id, populate_existing=True)
            assert stored is not None and contact is not None
            events = await session.scalars(
                select(CallEvent.applied)
                .where(CallEvent.attempt_id == attempt.id)
                .order_by(CallEvent.id)
            )
            rows.append(
                (
                    stored.status,
                    stored.provider_call_id is not None,
                    stored.talk_seconds,
                    contact.state,
                    contact.disposition,
                    list(events),
                )
            )
        return rows


async def test_a_group_does_what_each_callback_would_do_alone(sm: SM) -> None:
    alone_calls = await _live_calls(sm, 3, without_call_id=1)
    grouped_calls = await _live_calls(sm, 3, without_call_id=1)
    stray = f"CA{new_id('stray')}"
    alone = _mixed_callbacks(alone_calls, stray)
    grouped = _mixed_callbacks(grouped_calls, stray + "g")
    await record_event(sm, alone[3])
    await record_event(sm, grouped[3])

    one_by_one = [(await record_event(sm, u)).result for u in alone]
    together = [applied.result for applied in await record_events(sm, grouped)]

    assert together == one_by_one
    assert together == [
        "applied",
        "duplicate",
        "applied",
        "duplicate",
        "applied",
        "unknown",
        "applied",
        "applied",
        "unknown",
        "applied",
    ]
    assert await _state(sm, grouped_calls) == await _state(sm, alone_calls)
    assert [row[0] for row in await _state(sm, grouped_calls)] == [AttemptStatus.COMPLETED] * 3
    async with sm() as session:
        stored = await session.scalars(
            select(CallEvent.dedupe_key).where(
                CallEvent.provider_call_id.in_([u.provider_call_id for u in grouped])
            )
        )
        keys = list(stored)
    # Each event stored once, the unknown and the replayed ones included (not applied).
    assert sorted(keys) == sorted({u.dedupe_key for u in grouped})


async def test_a_group_costs_a_few_statements_whatever_its_size(sm: SM) -> None:
    attempts = await _live_calls(sm, 16)
    ringing = [_update(str(a.provider_call_id), AttemptStatus.RINGING, 1, a.id) for a in attempts]
    statements: list[str] = []
    engine = sm.kw["bind"].sync_engine

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement.split()[0])

    event.listen(engine, "before_cursor_execute", count)
    try:
        results = await record_events(sm, ringing)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert [r.result for r in results] == ["applied"] * 16
    # Attempts read and locked, duplicates looked for, events stored, attempts updated (one
    # executemany), besides SQLite's BEGIN: not three statements per event.
    work = [s for s in statements if s.upper() not in ("BEGIN", "COMMIT")]
    assert len(work) <= 4, statements
