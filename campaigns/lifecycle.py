"""Creating, starting and reading campaigns: the operations the API and the CLI share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns import breaker, policy, recurring
from campaigns.clock import utcnow
from campaigns.contact_counts import contact_counts
from campaigns.events import ContactsDue, emit
from campaigns.ids import new_id
from campaigns.models import (
    Attempt,
    AttemptStatus,
    Campaign,
    CampaignStatus,
    Contact,
    ContactState,
    Disposition,
    MachineDetection,
)
from campaigns.phones import CHOOSABLE_NUMBER_TYPES
from campaigns.transitions import complete_if_finished, finish_contact, has_open_contact


class CampaignError(ValueError):
    """A request that the campaign's state or settings make impossible.

    ``code`` says which kind: ``invalid`` (the request itself), ``not_found``, ``conflict`` (the
    campaign's state forbids it now), or what was wrong with the input (``invalid_policy``,
    ``invalid_number``, ``invalid_call_at``, ``dnc``, ``idempotency_key_reused``). Each edge
    answers in its own terms (the API maps codes to HTTP statuses).
    """

    def __init__(self, message: str, *, code: str = "invalid", details: Any = None):
        super().__init__(message)
        self.code = code
        self.details = details


# The ways a campaign's calls may reach its agent, as the edge registered them: each name with
# the campaign settings a campaign on it cannot do without. The domain knows no name itself, so
# a new way to place calls is registered at the edge, not added here.
AgentConnections = Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class CampaignSpec:
    name: str
    agent_id: str | None = None
    from_number: str | None = None
    default_region: str = "US"
    max_attempts: int = 3
    retry_delay_seconds: int = 300
    concurrency: int = 5
    cps: float | None = None
    machine_detection: str = MachineDetection.UNTIL_GREETING_ENDS
    ring_timeout_seconds: int = 30
    time_limit_seconds: int = 600
    start_at: datetime | None = None
    end_at: datetime | None = None
    timezone: str = "UTC"
    calling_periods: list[Any] | None = None
    rule_set: str | None = None
    retry_rules: dict[str, Any] | None = None
    max_attempts_per_day: int | None = None
    max_failures_per_number: int = 2
    end_after_number_failures: bool = False
    max_short_retries: int | None = None
    interval_placement: str | None = None
    rotate_step_seconds: int | None = None
    voicemail_policy: str = "hang_up"
    voicemail_message: str | None = None
    schedule_cron: str | None = None
    schedule_list: str | None = None
    agent_connection: str = "stream"
    agent_phone_number_id: str | None = None
    # None: phones.DEFAULT_NUMBER_TYPES.
    allowed_number_types: list[str] | None = None

    def validate(self, connections: AgentConnections) -> None:
        checks = [
            (bool(self.name.strip()), "name must not be empty"),
            (len(self.default_region) == 2, "default_region must be a two-letter region code"),
            (1 <= self.max_attempts <= 20, "max_attempts must be between 1 and 20"),
            (0 <= self.retry_delay_seconds <= 30 * 86400, "retry_delay_seconds out of range"),
            (1 <= self.concurrency <= 10_000, "concurrency must be between 1 and 10000"),
            (self.cps is None or 0 < self.cps <= 1000, "cps must be > 0 and <= 1000"),
            (
                self.machine_detection in MachineDetection.ALL,
                "machine_detection must be DetectMessageEnd, Enable or empty",
            ),
            (5 <= self.ring_timeout_seconds <= 600, "ring_timeout_seconds must be 5..600"),
            (1 <= self.time_limit_seconds <= 14400, "time_limit_seconds must be 1..14400"),
        ]
        for ok, message in checks:
            if not ok:
                raise CampaignError(message)
        self._validate_connection(connections)
        self._validate_number_types()

    def _validate_connection(self, connections: AgentConnections) -> None:
        needs = connections.get(self.agent_connection)
        if needs is None:
            names = sorted(connections)
            listed = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
            raise CampaignError(f"agent_connection must be {listed}")
        missing = [name for name in needs if not getattr(self, name, None)]
        if missing:
            raise CampaignError(
                f"agent_connection {self.agent_connection} needs {' and '.join(needs)}"
            )

    def _validate_number_types(self) -> None:
        chosen = self.allowed_number_types
        if chosen is None:
            return
        if not chosen or not all(isinstance(name, str) for name in chosen):
            raise CampaignError("allowed_number_types must name at least one type (or be null)")
        if "premium_rate" in chosen:
            raise CampaignError("premium_rate numbers are never called")
        unknown = sorted(set(chosen) - CHOOSABLE_NUMBER_TYPES)
        if unknown:
            raise CampaignError(
                f"allowed_number_types: unknown {', '.join(unknown)} "
                f"(choose from {', '.join(sorted(CHOOSABLE_NUMBER_TYPES))})"
            )


async def create_campaign(
    sm: async_sessionmaker[AsyncSession], spec: CampaignSpec, connections: AgentConnections
) -> Campaign:
    spec.validate(connections)
    campaign = Campaign(
        id=new_id("cmp"),
        name=spec.name.strip(),
        agent_id=spec.agent_id,
        from_number=spec.from_number,
        default_region=spec.default_region.upper(),
        status=CampaignStatus.DRAFT,
        max_attempts=spec.max_attempts,
        retry_delay_seconds=spec.retry_delay_seconds,
        concurrency=spec.concurrency,
        cps=spec.cps,
        machine_detection=spec.machine_detection,
        ring_timeout_seconds=spec.ring_timeout_seconds,
        time_limit_seconds=spec.time_limit_seconds,
        start_at=spec.start_at,
        end_at=spec.end_at,
        timezone=spec.timezone,
        calling_periods=spec.calling_periods,
        rule_set=spec.rule_set,
        retry_rules=spec.retry_rules,
        max_attempts_per_day=spec.max_attempts_per_day,
        max_failures_per_number=spec.max_failures_per_number,
        end_after_number_failures=spec.end_after_number_failures,
        max_short_retries=spec.max_short_retries,
        interval_placement=spec.interval_placement,
        rotate_step_seconds=spec.rotate_step_seconds,
        voicemail_policy=spec.voicemail_policy,
        voicemail_message=spec.voicemail_message,
        schedule_cron=spec.schedule_cron,
        schedule_list=spec.schedule_list,
        agent_connection=spec.agent_connection,
        agent_phone_number_id=spec.agent_phone_number_id,
        allowed_number_types=spec.allowed_number_types,
    )
    try:
        policy.validate_campaign_rules(campaign)
        if campaign.schedule_cron or campaign.schedule_list:
            if not (campaign.schedule_cron and campaign.schedule_list):
                raise recurring.ScheduleError("schedule_cron and schedule_list go together")
            recurring.cron_trigger(campaign.schedule_cron, campaign.timezone)
    except (policy.PolicyError, recurring.ScheduleError) as exc:
        raise CampaignError(str(exc), code="invalid_policy") from exc
    async with sm.begin() as session:
        session.add(campaign)
    return campaign


async def get_campaign(session: AsyncSession, campaign_id: str) -> Campaign:
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignError(f"no campaign {campaign_id!r}", code="not_found")
    return campaign


async def request_start(sm: async_sessionmaker[AsyncSession], campaign_id: str) -> Campaign:
    """Start now, or schedule the start when the campaign has a future ``start_at``."""
    async with sm.begin() as session:
        campaign = await get_campaign(session, campaign_id)
        if campaign.status not in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED):
            raise CampaignError(
                f"campaign is {campaign.status}; only a draft can be started",
                code="conflict",
            )
        if campaign.start_at is not None and campaign.start_at > utcnow():
            campaign.status = CampaignStatus.SCHEDULED
            return campaign
    return await start_now(sm, campaign_id)


async def start_now(sm: async_sessionmaker[AsyncSession], campaign_id: str) -> Campaign:
    now = utcnow()
    async with sm.begin() as session:
        campaign = await get_campaign(session, campaign_id)
        if campaign.status not in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED):
            return campaign
        campaign.status = CampaignStatus.RUNNING
        campaign.started_at = now
        emit(session, ContactsDue(campaign_id))
        # Contacts imported before the start become due at the start, not at their import.
        await session.execute(
            update(Contact)
            .where(
                Contact.campaign_id == campaign_id,
                Contact.state == ContactState.PENDING,
                Contact.next_attempt_at < now,
            )
            .values(next_attempt_at=now)
        )
        await session.flush()
        await complete_if_finished(session, campaign, now)
        return campaign


async def campaign_counts(session: AsyncSession, campaign_id: str) -> dict[str, Any]:
    found = (await contact_counts(session, [campaign_id]))[campaign_id]
    counts: dict[str, Any] = {
        "contacts": found.contacts,
        "pending": found.pending,
        "in_progress": found.in_progress,
        "attempts": found.dials,
        "dispositions": {**dict.fromkeys(Disposition.ALL, 0), **found.dispositions},
    }
    return counts


def _conflict(campaign: Campaign, action: str) -> CampaignError:
    return CampaignError(f"campaign is {campaign.status}: it cannot be {action}", code="conflict")


async def pause(sm: async_sessionmaker[AsyncSession], campaign_id: str) -> Campaign:
    """No new dials; calls already live finish normally."""
    async with sm.begin() as session:
        campaign = await _locked(session, campaign_id)
        if campaign.status == CampaignStatus.PAUSED:
            return campaign
        if campaign.status not in (CampaignStatus.RUNNING, CampaignStatus.SCHEDULED):
            raise _conflict(campaign, "paused")
        campaign.status = CampaignStatus.PAUSED
        return campaign


async def resume(sm: async_sessionmaker[AsyncSession], campaign_id: str) -> Campaign:
    now = utcnow()
    async with sm.begin() as session:
        campaign = await _locked(session, campaign_id)
        if campaign.status == CampaignStatus.RUNNING:
            return campaign
        if campaign.status != CampaignStatus.PAUSED:
            raise _conflict(campaign, "resumed")
        campaign.status = CampaignStatus.RUNNING
        campaign.started_at = campaign.started_at or now
        emit(session, ContactsDue(campaign_id))
        # Resuming says the cause of a pause is fixed: its attention items close.
        await session.run_sync(lambda sync: breaker.resolve(sync, campaign_id, now))
        await session.flush()
        # Everything may have finished while paused: nothing else would complete it.
        await complete_if_finished(session, campaign, now)
        return campaign


async def cancel(
    sm: async_sessionmaker[AsyncSession], campaign_id: str
) -> tuple[Campaign, list[str]]:
    """Stop for good: queued contacts become ``cancelled``. Returns the live calls' provider ids
    (the caller hangs them up when asked to; otherwise they finish and are recorded)."""
    now = utcnow()
    async with sm.begin() as session:
        campaign = await _locked(session, campaign_id)
        if campaign.status == CampaignStatus.CANCELLED:
            return campaign, []
        if campaign.status == CampaignStatus.COMPLETED:
            raise _conflict(campaign, "cancelled")
        campaign.status = CampaignStatus.CANCELLED
        campaign.completed_at = now
        pending = await session.scalars(
            select(Contact)
            .where(Contact.campaign_id == campaign_id, Contact.state == ContactState.PENDING)
            .with_for_update()
        )
        for contact in pending:
            finish_contact(session, contact, Disposition.CANCELLED, now)
        live = await session.scalars(
            select(Attempt.provider_call_id).where(
                Attempt.campaign_id == campaign_id,
                Attempt.status.in_(AttemptStatus.LIVE),
                Attempt.provider_call_id.is_not(None),
            )
        )
        return campaign, [call_id for call_id in live if call_id]


async def remove_contact(
    sm: async_sessionmaker[AsyncSession], campaign_id: str, contact_id: str
) -> Contact:
    """Take a contact out of a campaign: it is never dialled again (a live call finishes)."""
    now = utcnow()
    async with sm.begin() as session:
        campaign = await _locked(session, campaign_id)
        contact = await session.scalar(
            select(Contact)
            .where(Contact.id == contact_id, Contact.campaign_id == campaign_id)
            .with_for_update()
        )
        if contact is None:
            raise CampaignError(f"no contact {contact_id!r} in this campaign", code="not_found")
        if contact.state != ContactState.DONE:
            finish_contact(session, contact, Disposition.REMOVED, now)
            await session.flush()
            await complete_if_finished(session, campaign, now)
        return contact


async def expire_ended(sm: async_sessionmaker[AsyncSession]) -> int:
    """Contacts of campaigns whose ``end_at`` has passed get disposition ``expired``."""
    now = utcnow()
    async with sm.begin() as session:
        campaigns = list(
            await session.scalars(
                select(Campaign)
                .where(
                    Campaign.status.in_((CampaignStatus.RUNNING, CampaignStatus.PAUSED)),
                    Campaign.end_at <= now,
                )
                .with_for_update(skip_locked=True)
            )
        )
        expired = 0
        for campaign in campaigns:
            pending = await session.scalars(
                select(Contact)
                .where(Contact.campaign_id == campaign.id, Contact.state == ContactState.PENDING)
                .with_for_update()
            )
            for contact in pending:
                finish_contact(session, contact, Disposition.EXPIRED, now)
                expired += 1
            await session.flush()
            if campaign.status == CampaignStatus.PAUSED:
                campaign.status = CampaignStatus.RUNNING
            await complete_if_finished(session, campaign, now)
        return expired


async def complete_finished(sm: async_sessionmaker[AsyncSession]) -> int:
    """Complete the running campaigns whose contacts have all finished; returns how many.

    A campaign is completed by the transaction that finishes its last contact; only two such
    transactions at once on PostgreSQL can each leave it to the other (see
    transitions.complete_if_finished), and a node that stops between finishing a contact and
    committing leaves it to whoever runs this."""
    now = utcnow()
    async with sm() as session:
        running = list(
            await session.scalars(
                select(Campaign.id).where(
                    Campaign.status == CampaignStatus.RUNNING, Campaign.schedule_cron.is_(None)
                )
            )
        )
        # One index seek per running campaign: a join would read every open contact of all.
        finished = [c for c in running if not await has_open_contact(session, c)]
    completed = 0
    for campaign_id in finished:
        async with sm.begin() as session:
            campaign = await session.get(Campaign, campaign_id)
            if campaign is not None and await complete_if_finished(session, campaign, now):
                completed += 1
    return completed


async def _locked(session: AsyncSession, campaign_id: str) -> Campaign:
    campaign = await session.scalar(
        select(Campaign).where(Campaign.id == campaign_id).with_for_update()
    )
    if campaign is None:
        raise CampaignError(f"no campaign {campaign_id!r}", code="not_found")
    return campaign


async def next_call_at(session: AsyncSession, campaign_id: str) -> datetime | None:
    """When the campaign's next call is planned (None when nothing is waiting)."""
    return await session.scalar(
        select(func.min(Contact.next_attempt_at)).where(
            Contact.campaign_id == campaign_id, Contact.state == ContactState.PENDING
        )
    )
