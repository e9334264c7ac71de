"""Which call an attempt's set-up belongs to: its TwiML request and its one Media Stream.

A TwiML request is signed over a URL that names the attempt, but the signature proves only that
Twilio (or whoever holds the auth token) sent it, not that it is for the attempt's own call: a
request of another call, replayed against this URL, must not connect anyone. The rule:

- The request's CallSid must be the attempt's stored call id.
- An attempt with no call id yet (Twilio can fetch TwiML before the create's answer reaches us)
  takes the request's CallSid as its call id, once, and only while it is live, dialling the
  request's `To`, and no other attempt has that CallSid (the unique index on the call id settles
  a race between two such requests). The create's answer then finds the id already set.
- An attempt that has ended takes no more set-up: its call is over.

A Media Stream then starts once per call: the first `start` with a good token records its
stream id on the attempt in one conditional UPDATE, on whichever node it lands; any later one
for the same call finds it taken.
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridge.media.connector import CallContext, load_context
from campaigns.models import Attempt, AttemptStatus

log = logging.getLogger(__name__)

STREAM_ID_MAX = 64  # the column's width


class NotThisCall(Exception):
    """The request does not belong to the attempt it names. ``code`` is the API error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


async def answered_call(
    sm: async_sessionmaker[AsyncSession], attempt_id: str, call_sid: str, to: str
) -> CallContext:
    """The context of the attempt's own answered call, or NotThisCall."""
    context = await load_context(sm, attempt_id) if attempt_id else None
    if context is None:
        raise NotThisCall("unknown_attempt", "no attempt has this attempt_id")
    if context.ended:
        raise NotThisCall("attempt_ended", "the attempt has ended; its call takes no more set-up")
    if context.call_sid is None and await _bind(sm, attempt_id, call_sid, to):
        log.info("attempt %s takes its call id from the TwiML request", attempt_id)
    if context.call_sid is None:
        # Bound just now, by this request or by the create's answer arriving meanwhile.
        context = await load_context(sm, attempt_id)
    if context is None or context.call_sid != call_sid:
        log.warning("TwiML request for attempt %s names another call", attempt_id)
        raise NotThisCall("not_this_call", "the request's CallSid is not the attempt's call")
    return context


async def _bind(
    sm: async_sessionmaker[AsyncSession], attempt_id: str, call_sid: str, to: str | None
) -> bool:
    """Give a live attempt with no call id this one, if no other attempt has it (and, when
    ``to`` is given, only if the attempt dials that number)."""
    matching = [
        Attempt.id == attempt_id,
        Attempt.provider_call_id.is_(None),
        Attempt.status.in_(AttemptStatus.LIVE),
    ]
    if to is not None:
        matching.append(Attempt.phone_number == to)
    try:
        async with sm.begin() as session:
            taken = await session.scalar(
                select(Attempt.id).where(Attempt.provider_call_id == call_sid)
            )
            if taken is not None:
                return False
            bound = await session.execute(
                update(Attempt).where(*matching).values(provider_call_id=call_sid)
            )
            return bool(bound.rowcount)  # type: ignore[attr-defined]
    except IntegrityError:
        # Another attempt took this call id in the meantime.
        return False


async def bind_registered(
    sm: async_sessionmaker[AsyncSession], attempt_id: str, call_sid: str
) -> bool:
    """A registered call's attempt takes the call sid its stream's `start` names: once, while
    it is live and has none, and only a sid no other attempt has."""
    if not call_sid or len(call_sid) > STREAM_ID_MAX:
        return False
    return await _bind(sm, attempt_id, call_sid, None)


async def start_stream(
    sm: async_sessionmaker[AsyncSession], attempt_id: str, call_sid: str, stream_id: str
) -> bool:
    """Record the call's one Media Stream; False if the call is not the attempt's or already
    has a stream (the token was used)."""
    if not stream_id or len(stream_id) > STREAM_ID_MAX:
        return False
    async with sm.begin() as session:
        started = await session.execute(
            update(Attempt)
            .where(
                Attempt.id == attempt_id,
                Attempt.provider_call_id == call_sid,
                Attempt.media_stream_id.is_(None),
            )
            .values(media_stream_id=stream_id)
        )
        return bool(started.rowcount)  # type: ignore[attr-defined]
