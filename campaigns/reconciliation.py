"""Reconciliation: what the dispatcher could not confirm, settled by asking the provider.

A create without a clear answer (a timeout, a crash between the create and its answer) is never
sent again: once its lease has run out, the provider's own call list says whether the call was
made (the attempt adopts it) or not (not placed). Where the provider cannot list the calls
(Dialer.can_list_calls), "not in the list" proves nothing: the attempt waits for the call's own
report, and with none by the time the call and its report must be over, it ends failed as
unconfirmed (it counts, and the contact is not dialled again from it). A live call whose
callbacks were lost is asked about once it should have ended; after a restart, every call
placed before it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns import transitions
from campaigns.call_updates import provider_call_update
from campaigns.clock import as_utc, utcnow
from campaigns.dialing import Dialer, ProviderCall, call_option, lists_calls
from campaigns.models import Attempt, AttemptStatus, Campaign, Contact

log = logging.getLogger(__name__)

# Slack added to the provider timeout before another pass may reconcile a dialing attempt.
LEASE_SLACK = timedelta(seconds=5)
# Calls placed this soon after the node started may have called back before it listened.
STARTUP_GRACE = timedelta(seconds=5)
# A call whose creation time is this much earlier than its attempt cannot be that attempt's.
RECONCILE_SKEW = timedelta(seconds=5)
# How long after a call must have ended its report may still come, where the provider cannot
# list calls. A call cannot outlive its ring timeout plus its time limit; the report follows
# the call's end once the provider has analysed it (usually well within a minute, slower
# under load), so a few minutes more before an unanswered create is given up as unconfirmed.
REPORT_GRACE = timedelta(minutes=5)


class Reconciler:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        dialer: Dialer,
        *,
        provider_timeout_seconds: float = 10.0,
        started_at: datetime | None = None,
        on_call_ended: Callable[[], None] | None = None,
        report_grace: timedelta = REPORT_GRACE,
    ) -> None:
        self._sm = sessionmaker
        self._dialer = dialer
        self._provider_timeout = timedelta(seconds=provider_timeout_seconds)
        self._started_at = started_at
        self._on_call_ended = on_call_ended
        self._report_grace = report_grace

    async def reconcile(self, attempt_id: str) -> str:
        """Settle an attempt whose create had no clear answer: adopted, not_placed or skipped;
        where the provider cannot list calls, waiting (for the call's report) or unconfirmed."""
        async with self._sm() as session:
            attempt = await session.get(Attempt, attempt_id)
            if attempt is None or attempt.status != AttemptStatus.DIALING:
                return "skipped"
            to, since = attempt.phone_number, attempt.created_at
            ended_by = await self._unlisted_call_over(session, attempt)
        if ended_by is not None:
            return await self._await_report(attempt_id, ended_by + self._report_grace)
        try:
            calls = await self._dialer.find_calls(to, since - RECONCILE_SKEW)
        except Exception:
            log.exception("could not list calls to reconcile attempt %s; will retry", attempt_id)
            return "skipped"
        now = utcnow()
        async with self._sm.begin() as session:
            attempt = await session.get(Attempt, attempt_id, with_for_update=True)
            if attempt is None or attempt.status != AttemptStatus.DIALING:
                return "skipped"
            if attempt.provider_call_id is not None:
                found: ProviderCall | None = next(
                    (c for c in calls if c.call_id == attempt.provider_call_id), None
                )
            else:
                found = await _unclaimed_call(session, calls)
            if found is None:
                log.info("attempt %s: provider has no call, not placed", attempt_id)
                await transitions.not_placed(session, attempt, now)
                return "not_placed"
            log.info("attempt %s: adopting provider call %s", attempt_id, found.call_id)
            await transitions.adopt(session, attempt, found, now)
            return "adopted"

    async def _unlisted_call_over(self, session: AsyncSession, attempt: Attempt) -> datetime | None:
        """When the attempt's call must have ended, had the create made it, if the provider
        cannot list the calls of the attempt's campaign; None when it can."""
        campaign = await session.get(Campaign, attempt.campaign_id)
        if campaign is None or lists_calls(self._dialer, campaign.agent_connection):
            return None
        contact = await session.get(Contact, attempt.contact_id)
        ring = call_option(
            contact.call_options if contact is not None else None,
            "ring_timeout_seconds",
            campaign.ring_timeout_seconds,
        )
        return as_utc(attempt.scheduled_at) + timedelta(
            seconds=int(ring) + campaign.time_limit_seconds
        )

    async def _await_report(self, attempt_id: str, deadline: datetime) -> str:
        """An unanswered create the provider's list cannot settle: its call's report (matched
        to the attempt even without the call's id) settles it; none by ``deadline``, it ends
        unconfirmed. Never not placed: the call may have been made."""
        now = utcnow()
        async with self._sm.begin() as session:
            attempt = await session.get(Attempt, attempt_id, with_for_update=True)
            if attempt is None or attempt.status != AttemptStatus.DIALING:
                return "skipped"
            if now < deadline:
                # Looked at again once the report is overdue, not on every pass.
                attempt.lease_expires_at = deadline
                log.info(
                    "attempt %s: the provider cannot list calls; waiting for its report until %s",
                    attempt_id,
                    deadline.isoformat(),
                )
                return "waiting"
            log.warning(
                "attempt %s: no report of its call by %s; ended unconfirmed, not retried",
                attempt_id,
                deadline.isoformat(),
            )
            await transitions.unconfirmed(session, attempt, now)
        if self._on_call_ended is not None:
            self._on_call_ended()
        return "unconfirmed"

    async def reconcile_expired_leases(self) -> int:
        """Attempts whose dial was never confirmed in time (a crash, a hung request)."""
        now = utcnow()
        async with self._sm.begin() as session:
            attempts = list(
                await session.scalars(
                    select(Attempt)
                    .where(
                        Attempt.status == AttemptStatus.DIALING,
                        Attempt.lease_expires_at < now,
                    )
                    .limit(500)
                    .with_for_update(skip_locked=True)
                )
            )
            for attempt in attempts:
                # Extend the lease so that no other node reconciles it at the same time.
                attempt.lease_expires_at = now + self._provider_timeout + LEASE_SLACK
            ids = [a.id for a in attempts]
        for attempt_id in ids:
            await self.reconcile(attempt_id)
        return len(ids)

    async def refresh_live_calls(self, older_than: timedelta | None = None) -> int:
        """Ask the provider about live calls whose callbacks may have been lost.

        With ``older_than``, only calls that should have ended by now: a call cannot outlive its
        ring timeout plus its time limit, so silence after that (plus ``older_than``) means a
        lost callback. The slot stays taken until the provider says the call is over.

        Without it (the sweep after a restart), every live call placed before this node started
        (give or take its start-up): their callbacks may have gone nowhere while it was down.
        Calls placed since report to a node that listens; asking about them too would cost a
        request per live call on every sweep, a load that delays the dials of a busy node.
        """
        now = utcnow()
        # A callback can move an attempt on before its dial was recorded (dialed_at unset).
        started = func.coalesce(Attempt.dialed_at, Attempt.scheduled_at)
        async with self._sm() as session:
            query = (
                select(
                    Attempt.id,
                    Attempt.provider_call_id,
                    started,
                    Campaign.ring_timeout_seconds,
                    Campaign.time_limit_seconds,
                )
                .join(Campaign, Campaign.id == Attempt.campaign_id)
                .where(
                    Attempt.status.in_(AttemptStatus.LIVE - {AttemptStatus.DIALING}),
                    Attempt.provider_call_id.is_not(None),
                )
            )
            if older_than is not None:
                query = query.where(started < now - older_than).order_by(started)
            elif self._started_at is not None:
                query = query.where(started < self._started_at + STARTUP_GRACE)
            rows = list((await session.execute(query.limit(1000))).all())
        if older_than is not None:
            rows = [
                row
                for row in rows
                if as_utc(row[2]) + timedelta(seconds=row[3] + row[4]) + older_than < now
            ]
        ended = 0
        for attempt_id, call_id, *_ in rows:
            try:
                call = await self._dialer.fetch_call(call_id)
            except Exception:
                log.exception("could not fetch call %s", call_id)
                continue
            if call is None or call.status not in AttemptStatus.TERMINAL:
                continue
            async with self._sm.begin() as session:
                attempt = await session.get(Attempt, attempt_id, with_for_update=True)
                if attempt is not None and await transitions.apply_event(
                    session, attempt, provider_call_update(call, utcnow()), utcnow()
                ):
                    ended += 1
        if ended and self._on_call_ended is not None:
            self._on_call_ended()
        return ended


async def _unclaimed_call(session: AsyncSession, calls: list[ProviderCall]) -> ProviderCall | None:
    if not calls:
        return None
    taken = set(
        await session.scalars(
            select(Attempt.provider_call_id).where(
                Attempt.provider_call_id.in_([c.call_id for c in calls])
            )
        )
    )
    free = [c for c in calls if c.call_id not in taken]
    # The oldest unclaimed call is the one this attempt's lost create produced.
    free.sort(key=lambda c: c.created_at or utcnow())
    return free[0] if free else None
