"""Claims due contacts, paces them, and hands them to a Dialer.

The order of operations is what makes "at most one dial per attempt" hold across crashes:
the Attempt row is committed before the provider is asked to dial, and an attempt whose create
had no clear answer is reconciled against the provider's own call list, never re-dialled blindly
(campaigns.reconciliation). Pacing slots come from campaigns.pacing; every change of state goes
through campaigns.transitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns import followups, policy, transitions
from campaigns.clock import utcnow
from campaigns.dialing import DialAmbiguous, Dialer, DialRefused, DialRequest, call_option
from campaigns.dnc import blocked_numbers
from campaigns.models import (
    Attempt,
    AttemptStatus,
    Campaign,
    CampaignStatus,
    Contact,
    ContactState,
    Disposition,
)
from campaigns.pacing import send_deadline, slot_index, slot_time
from campaigns.phones import mask
from campaigns.reconciliation import LEASE_SLACK
from campaigns.tasks import TaskSet

log = logging.getLogger(__name__)

# Due contacts examined per claim beyond the free slots, for those a window or DNC holds back.
CLAIM_LOOKAHEAD = 100
# How far ahead of "now" work is claimed: pacing slots handed out, and contacts due soon (a
# reminder's call_at) claimed early, so that the claim's own work is done before they are due
# and each dial only waits for its instant.
PACING_HORIZON = timedelta(seconds=2)
# A campaign is claimed from again when the work it has planned ahead runs this short. Half the
# horizon: each pass claims about half a horizon of work, instead of one dial per pass.
REFILL_AT = PACING_HORIZON / 2
# Busy-provider refusals (429) are retried within the attempt this many times.
REFUSAL_RETRIES = 3
# How long before its instant a claimed dial is checked again (a pause, a cancel, a do-not-call
# entry since the claim). Long enough for a busy database to answer, short enough that what
# happens in the last moment before a dial is as rare as a request crossing it in flight.
RECHECK_LEAD = timedelta(milliseconds=300)
# How many fresh slots a dial takes before it goes out however late it is.
MAX_RESLOTS = 5
# A create must reach the provider while the calling window is still open in every zone of the
# number. It leaves now and arrives within its round trip (the answer proves it arrived): so a
# dial is started only if the window stays open until now + this margin + the slowest round trip
# of the last CREATES_MEASURED answered creates. The margin covers what the measure cannot (a
# slower create than the recent ones, a busy event loop at either end, clocks apart).
DEFAULT_WINDOW_MARGIN_SECONDS = 0.3
CREATES_MEASURED = 50
# The most the measured round trip adds, whatever it is (a create answered that slowly is close
# to the provider timeout anyway). It also keeps the whole span well under a minute, which the
# window check relies on (see CallingHours.closed_at).
MAX_MEASURED_CREATE = timedelta(seconds=10)
# error_code of an attempt stopped before its create because the window would close first.
WINDOW_CLOSED = "window_closed"


class _Claimed(NamedTuple):
    """A dial handed out by a claim: what to send, its instant, and its campaign's pacing."""

    request: DialRequest
    at: datetime
    cps: float | None  # None: not paced


class Dispatcher:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        dialer: Dialer,
        *,
        provider_timeout_seconds: float = 10.0,
        batch_size: int = 200,
        idle_poll_seconds: float = 5.0,
        on_next_due: Callable[[datetime | None], None] | None = None,
        window_margin_seconds: float = DEFAULT_WINDOW_MARGIN_SECONDS,
    ) -> None:
        self._sm = sessionmaker
        self._dialer = dialer
        self._provider_timeout = timedelta(seconds=provider_timeout_seconds)
        self._window_margin = timedelta(seconds=window_margin_seconds)
        # Round trips (seconds) of the latest answered creates.
        self._create_round_trips: deque[float] = deque(maxlen=CREATES_MEASURED)
        self._batch_size = batch_size
        self._idle_poll = idle_poll_seconds
        self._on_next_due = on_next_due
        self._wakeup = asyncio.Event()
        self._tasks = TaskSet()
        self._loop_task: asyncio.Task[None] | None = None
        self._claiming = False

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._claiming = True
        self._loop_task = asyncio.create_task(self._run(), name="dispatcher")
        self.wake()

    async def stop(self, drain_seconds: float = 10.0) -> None:
        """Stop claiming; give dials already handed out a chance to reach the provider."""
        self._claiming = False
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        await self._tasks.drain(drain_seconds)

    @property
    def in_flight(self) -> int:
        """Dials handed out and not yet answered by the provider."""
        return len(self._tasks)

    def wake(self) -> None:
        self._wakeup.set()

    @property
    def dials_in_flight(self) -> int:
        return len(self._tasks)

    @property
    def arrival_margin(self) -> timedelta:
        """How long after it leaves a create may still be on its way to the provider."""
        measured = timedelta(seconds=max(self._create_round_trips, default=0.0))
        return self._window_margin + min(measured, MAX_MEASURED_CREATE)

    async def _run(self) -> None:
        while self._claiming:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._idle_poll)
            self._wakeup.clear()
            try:
                await self.dispatch_pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The next wake-up tries again; a database hiccup must not stop dialling for good.
                log.exception("dispatch pass failed")

    # -- claiming ----------------------------------------------------------------------------

    async def dispatch_pass(self) -> int:
        """Claim what may be dialled soon in every running campaign. Returns the number claimed.

        Then asks for the next pass at the earliest instant one would claim anything: when a
        campaign's planned work runs short, or its next contact comes within the horizon. A
        campaign held back by its live calls needs no timer: a call ending wakes the dispatcher.
        """
        now = utcnow()
        async with self._sm() as session:
            campaign_ids = list(
                await session.scalars(
                    select(Campaign.id).where(Campaign.status == CampaignStatus.RUNNING)
                )
            )
        claimed = 0
        next_pass: datetime | None = None
        for campaign_id in campaign_ids:
            if not self._claiming:
                break
            dials, again = await self._claim(campaign_id, now)
            for dial in dials:
                self._tasks.spawn(self._dial(dial))
                claimed += 1
            if again is not None and (next_pass is None or again < next_pass):
                next_pass = again
        if self._on_next_due is not None:
            self._on_next_due(next_pass)
        return claimed

    async def _claim(
        self, campaign_id: str, now: datetime
    ) -> tuple[list[_Claimed], datetime | None]:
        """The dials claimed, each with its instant, and when to claim from the campaign again."""
        horizon = now + PACING_HORIZON
        async with self._sm() as session:
            # Nothing due within the horizon (every contact on a call, or waiting for a retry
            # or a reminder's time further ahead): nothing to claim, so the campaign's row is
            # left alone. Every call's end wakes a pass, and at the end of a campaign or between
            # reminders most find nothing due: a lock taken by each would queue calls' ends
            # behind one another.
            if not await _due_by(session, campaign_id, horizon):
                campaign = await session.get(Campaign, campaign_id)
                if campaign is None or campaign.status != CampaignStatus.RUNNING:
                    return [], None
                return [], await _next_pass(session, campaign)
        async with self._sm.begin() as session:
            # Locking the campaign row serialises claims of one campaign across every node, so the
            # live-call count and the pacing slots below are exact, not per-process estimates.
            campaign = await session.scalar(
                select(Campaign)
                .where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.RUNNING)
                .with_for_update()
            )
            if campaign is None:
                return [], None
            live = await session.scalar(
                select(func.count())
                .select_from(Attempt)
                .where(
                    Attempt.campaign_id == campaign_id,
                    Attempt.status.in_(AttemptStatus.LIVE),
                )
            )
            free = campaign.concurrency - (live or 0)
            room = min(free, self._batch_size)
            cps = campaign.cps
            first_slot = now
            if cps:
                planned_until = max(now, campaign.next_dial_at or now)
                next_index = slot_index(planned_until, cps)
                first_slot = slot_time(next_index, cps)
                if first_slot > now + REFILL_AT:
                    # Enough is planned ahead; claim again when it runs short, half a horizon at a
                    # time rather than one dial per pass.
                    return [], first_slot - REFILL_AT
                ahead = (horizon - first_slot).total_seconds()
                room = min(room, math.floor(ahead * cps) + 1)
            if room <= 0:
                # Held back by its live calls: a call that ends wakes the dispatcher.
                return [], None
            contacts = list(
                await session.scalars(
                    select(Contact)
                    .where(
                        Contact.campaign_id == campaign_id,
                        Contact.state == ContactState.PENDING,
                        Contact.next_attempt_at <= horizon,
                    )
                    .order_by(Contact.next_attempt_at)
                    # Some due contacts turn out not callable now (window, DNC): look further.
                    .limit(max(room, CLAIM_LOOKAHEAD))
                    .with_for_update(skip_locked=True)
                )
            )
            ready = await _callable(session, campaign, contacts, first_slot, room)
            claimed: list[_Claimed] = []
            margin = self.arrival_margin
            provider = self._dialer.provider_of(campaign.agent_connection)
            for contact, allowed_at in ready:
                if cps:
                    # The next free slot, or the first one after the contact's own instant.
                    index = max(next_index, slot_index(allowed_at, cps))
                    at = slot_time(index, cps)
                else:
                    at = allowed_at
                # A slot handed out ahead may lie past the window's close (or too near it for
                # the create to arrive in time): such a dial is not claimed at all, and the
                # contact waits for its next opening. The send checks again, against its own
                # instant (_dial).
                closed = policy.calling_hours(campaign, contact).closed_at(at, at + margin)
                if closed is not None:
                    transitions.replan_after_close(session, campaign, contact, closed, now)
                    continue
                if cps:
                    next_index = index + 1
                attempt = transitions.claim(
                    session,
                    campaign,
                    contact,
                    at=at,
                    now=now,
                    lease_expires_at=at + self._provider_timeout + LEASE_SLACK,
                    provider=provider,
                )
                request = _request(campaign, contact, attempt)
                if campaign.agent_connection == "native":
                    # The agent places the call itself: a follow-up call's context goes with
                    # the dial (stream and register calls get it when they are answered).
                    variables = await followups.call_variables(session, attempt, contact)
                    request = dataclasses.replace(request, dynamic_variables=variables)
                claimed.append(_Claimed(request, at, cps or None))
            if cps and claimed:
                campaign.next_dial_at = slot_time(next_index, cps)
            if not claimed and contacts:
                # Contacts settled here (do-not-call, expired) may have been the last open ones.
                await session.flush()
                await transitions.complete_if_finished(session, campaign, now)
            if len(claimed) >= free:
                return claimed, None
            await session.flush()
            return claimed, await _next_pass(session, campaign)

    # -- dialling ----------------------------------------------------------------------------

    async def _dial(self, dial: _Claimed) -> None:
        request, at, cps = dial
        # The re-check runs a moment before the dial's instant, so that its round trip (and any
        # wait for a database connection) does not make the dial late.
        await _sleep_until(at - RECHECK_LEAD)
        hours = await self._still_wanted(request)
        if hours is None:
            self.wake()
            return
        # Checked last, right before sending: any wait above may have made the dial late.
        if not await self._wait_for_slot(request, at, cps):
            self.wake()
            return
        for retry in range(REFUSAL_RETRIES + 1):
            # After every wait (the pacing slot, a back-off), immediately before the create
            # leaves: the window must still be open when it reaches the provider.
            sent_at = utcnow()
            closed = hours.closed_at(sent_at, sent_at + self.arrival_margin)
            if closed is not None:
                await self._stop_at_close(request, closed)
                break
            started = time.monotonic()
            try:
                call_id = await self._dialer.place_call(request)
            except DialRefused as refusal:
                self._create_round_trips.append(time.monotonic() - started)
                if refusal.retryable and retry < REFUSAL_RETRIES:
                    await asyncio.sleep(_backoff(retry))
                    if not await self._renew_lease(request.attempt_id):
                        # The lease ran out during the back-off: housekeeping may be settling
                        # the attempt already, so another create could dial it a second time.
                        break
                    # As before the first create: a pause, a cancel or a do-not-call entry
                    # since then stops the dial, and the calling hours are read again.
                    hours = await self._still_wanted(request)
                    if hours is None:
                        break
                    if cps is not None:
                        # Another create, and the provider counts it: it needs a slot of its own.
                        slot = await self._fresh_slot(request)
                        if slot is None or not await self._wait_for_slot(request, slot, cps):
                            break
                    continue
                await self._record_refusal(request, refusal)
            except DialAmbiguous as exc:
                log.warning(
                    "create for attempt %s had no clear answer: %s", request.attempt_id, exc
                )
                await self._defer_reconciliation(request.attempt_id)
            except Exception:
                log.exception("dialer failed for attempt %s", request.attempt_id)
                await self._defer_reconciliation(request.attempt_id)
            else:
                self._create_round_trips.append(time.monotonic() - started)
                await self._record_dialed(request.attempt_id, call_id, sent_at)
                log.info(
                    "dialled %s for attempt %s: %s", mask(request.to), request.attempt_id, call_id
                )
                # A placed call keeps its live slot until it ends, and that end wakes the
                # dispatcher: nothing new to claim now.
                return
            break
        self.wake()

    async def _renew_lease(self, attempt_id: str) -> bool:
        """Keep the attempt for one more create, if it is still this dial's to make.

        Housekeeping only reconciles attempts whose lease has expired, so a lease renewed while
        still valid (in one statement, under the row's lock) means nobody else is deciding the
        attempt's fate; an expired one is left to housekeeping.
        """
        now = utcnow()
        async with self._sm.begin() as session:
            renewed = await session.execute(
                update(Attempt)
                .where(
                    Attempt.id == attempt_id,
                    Attempt.status == AttemptStatus.DIALING,
                    Attempt.lease_expires_at > now,
                )
                .values(lease_expires_at=now + self._provider_timeout + LEASE_SLACK)
            )
            return renewed.rowcount == 1  # type: ignore[attr-defined]

    async def _still_wanted(self, request: DialRequest) -> policy.CallingHours | None:
        """Re-check just before dialling: a pause, a cancel or a do-not-call entry that arrived
        since the claim stops the dial (the attempt is then not placed).

        Returns the contact's calling hours as they stand now (a campaign paused, edited and
        resumed since the claim has new ones), for the window check at the send; None when the
        dial is off.
        """
        now = utcnow()
        async with self._sm.begin() as session:
            attempt = await session.get(Attempt, request.attempt_id, with_for_update=True)
            if attempt is None or attempt.status != AttemptStatus.DIALING:
                return None
            campaign = await session.get(Campaign, request.campaign_id)
            blocked = await blocked_numbers(session, request.campaign_id, [request.to])
            if campaign is not None and campaign.status == CampaignStatus.RUNNING and not blocked:
                contact = await session.get(Contact, request.contact_id)
                if contact is not None:
                    return policy.calling_hours(campaign, contact)
            contact = await transitions.not_placed(session, attempt, now)
            if contact is not None and contact.state == ContactState.PENDING:
                if blocked:
                    transitions.finish_contact(session, contact, Disposition.DNC, now)
                elif campaign is not None and campaign.status == CampaignStatus.CANCELLED:
                    transitions.finish_contact(session, contact, Disposition.CANCELLED, now)
                if contact.state == ContactState.DONE and campaign is not None:
                    await session.flush()
                    await transitions.complete_if_finished(session, campaign, now)
            return None

    async def _stop_at_close(self, request: DialRequest, closed: datetime) -> None:
        """The window would close before the create reached the provider: the attempt ends as
        not placed (not counted against max_attempts, nothing dialled), with its reason, and the
        contact waits for its window's next opening."""
        log.info(
            "attempt %s to %s not dialled: its calling window closes before the call would "
            "reach the provider",
            request.attempt_id,
            mask(request.to),
        )
        now = utcnow()
        async with self._sm.begin() as session:
            attempt = await session.get(Attempt, request.attempt_id, with_for_update=True)
            if attempt is None or attempt.status != AttemptStatus.DIALING:
                return
            contact = await transitions.not_placed(
                session,
                attempt,
                closed,
                error_code=WINDOW_CLOSED,
                error_message="not dialled: the calling window closes before the call would "
                "reach the provider",
            )
            campaign = await session.get(Campaign, request.campaign_id)
            if (
                contact is not None
                and campaign is not None
                and contact.state == ContactState.PENDING
            ):
                transitions.replan_after_close(session, campaign, contact, closed, now)
                if contact.state == ContactState.DONE:
                    await session.flush()
                    await transitions.complete_if_finished(session, campaign, now)

    async def _wait_for_slot(self, request: DialRequest, at: datetime, cps: float | None) -> bool:
        """Sleep until the dial's pacing slot; False if the attempt was settled meanwhile.

        A dial that wakes up too late to count in its slot's wall-clock second (a stalled
        process, a busy machine) takes a fresh slot rather than going out in a second whose own
        slots are all handed out: calls per second is what the provider sees, not what was
        planned.
        """
        for _ in range(MAX_RESLOTS):
            await _sleep_until(at)
            if cps is None or utcnow() <= send_deadline(at):
                return True
            slot = await self._fresh_slot(request)
            if slot is None:
                return False
            at = slot
        return True

    async def _fresh_slot(self, request: DialRequest) -> datetime | None:
        async with self._sm.begin() as session:
            campaign = await session.scalar(
                select(Campaign).where(Campaign.id == request.campaign_id).with_for_update()
            )
            attempt = await session.get(Attempt, request.attempt_id, with_for_update=True)
            if campaign is None or attempt is None or attempt.status != AttemptStatus.DIALING:
                return None
            now = utcnow()
            slot = now
            if campaign.cps:
                # The first slot nobody holds: after every slot handed out, never in the past.
                index = slot_index(max(now, campaign.next_dial_at or now), campaign.cps)
                slot = slot_time(index, campaign.cps)
                campaign.next_dial_at = slot_time(index + 1, campaign.cps)
            attempt.scheduled_at = slot
            # No other node may reconcile the attempt while it waits for its new slot.
            attempt.lease_expires_at = slot + self._provider_timeout + LEASE_SLACK
            return slot

    async def _defer_reconciliation(self, attempt_id: str) -> None:
        """Leave the attempt to housekeeping once the provider has surely finished with it.

        Listing calls at once would race the create still being processed on the provider's
        side: "not found" now does not mean "never created".
        """
        async with self._sm.begin() as session:
            attempt = await session.get(Attempt, attempt_id, with_for_update=True)
            if attempt is not None and attempt.status == AttemptStatus.DIALING:
                attempt.lease_expires_at = utcnow() + self._provider_timeout * 2 + LEASE_SLACK

    async def _record_dialed(self, attempt_id: str, call_id: str, sent_at: datetime) -> None:
        async with self._sm.begin() as session:
            attempt = await session.get(Attempt, attempt_id, with_for_update=True)
            if attempt is not None:
                transitions.placed(attempt, call_id, sent_at)

    async def _record_refusal(self, request: DialRequest, refusal: DialRefused) -> None:
        log.warning(
            "provider refused attempt %s to %s: %s %s",
            request.attempt_id,
            mask(request.to),
            refusal.code,
            refusal,
        )
        now = utcnow()
        async with self._sm.begin() as session:
            attempt = await session.get(Attempt, request.attempt_id, with_for_update=True)
            if attempt is None or attempt.status != AttemptStatus.DIALING:
                return
            if refusal.retryable:
                # Nothing was created and the provider asked us to slow down: not an attempt.
                await transitions.not_placed(session, attempt, now + timedelta(seconds=30))
                return
            await transitions.refused(
                session, attempt, refusal.code, str(refusal), now, refusal.error_class
            )


async def _callable(
    session: AsyncSession, campaign: Campaign, contacts: list[Contact], at: datetime, room: int
) -> list[tuple[Contact, datetime]]:
    """At most ``room`` contacts that may be dialled within the pacing horizon from ``at``, each
    with the earliest instant it may be; the rest are settled or planned later.

    Checked at claim time, not only at import: a number put on a do-not-call list, or a window
    that closed, while the campaign runs must stop the dial.
    """
    blocked = await blocked_numbers(session, campaign.id, [c.current_number for c in contacts])
    ready: list[tuple[Contact, datetime]] = []
    for contact in contacts:
        if contact.current_number in blocked:
            transitions.finish_contact(session, contact, Disposition.DNC, at)
            continue
        # Claimed ahead of time (within the horizon): never before the contact's own instant.
        due = contact.next_attempt_at
        planned = policy.plan(campaign, contact, max(at, due) if due is not None else at)
        if planned is None:
            transitions.finish_contact(session, contact, Disposition.EXPIRED, at)
        elif planned > at + PACING_HORIZON:
            contact.next_attempt_at = planned
        elif len(ready) < room:
            ready.append((contact, planned))
    return ready


async def _sleep_until(instant: datetime) -> None:
    delay = (instant - utcnow()).total_seconds()
    if delay > 0:
        await asyncio.sleep(delay)  # a dial's instant, not a wait for a condition


def _backoff(retry: int) -> float:
    return min(8.0, 0.5 * 2**retry) * random.uniform(0.5, 1.0)


def _request(campaign: Campaign, contact: Contact, attempt: Attempt) -> DialRequest:
    options = contact.call_options
    return DialRequest(
        attempt_id=attempt.id,
        campaign_id=campaign.id,
        contact_id=contact.id,
        to=contact.current_number,
        from_number=campaign.from_number,
        agent_id=campaign.agent_id,
        machine_detection=call_option(options, "machine_detection", campaign.machine_detection)
        or None,
        ring_timeout_seconds=call_option(
            options, "ring_timeout_seconds", campaign.ring_timeout_seconds
        ),
        time_limit_seconds=campaign.time_limit_seconds,
        dynamic_variables=dict(contact.dynamic_variables or {}),
        agent_connection=campaign.agent_connection,
        agent_phone_number_id=campaign.agent_phone_number_id,
        record=bool(call_option(options, "record", False)),
        agent_override=contact.agent_override,
        user_id=contact.user_id,
    )


async def _due_by(session: AsyncSession, campaign_id: str, until: datetime) -> bool:
    """True when a contact of the campaign waits for a call due by ``until``."""
    found = await session.scalar(
        select(Contact.id)
        .where(
            Contact.campaign_id == campaign_id,
            Contact.state == ContactState.PENDING,
            Contact.next_attempt_at <= until,
        )
        .limit(1)
    )
    return found is not None


async def _next_pass(session: AsyncSession, campaign: Campaign) -> datetime | None:
    """When to claim from the campaign again: a refill ahead of its next due contact (or of its
    next pacing slot, if later); None when no contact waits."""
    upcoming = await session.scalar(
        select(func.min(Contact.next_attempt_at)).where(
            Contact.campaign_id == campaign.id,
            Contact.state == ContactState.PENDING,
        )
    )
    if upcoming is None:
        return None
    if campaign.cps and campaign.next_dial_at is not None:
        upcoming = max(upcoming, campaign.next_dial_at)
    return upcoming - REFILL_AT
