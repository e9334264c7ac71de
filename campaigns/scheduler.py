"""APScheduler says WHEN work is released; the database says WHAT. Jobs are rebuilt at start-up."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns import recurring
from campaigns.clock import to_real, utcnow
from campaigns.models import Campaign, CampaignStatus, ScheduleFiring
from campaigns.tasks import TaskSet

log = logging.getLogger(__name__)

WAKEUP_JOB = "dispatcher-wakeup"


class Scheduler:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        start_campaign: Callable[[str], Awaitable[object]],
        wake_dispatcher: Callable[[], None],
        housekeeping: Callable[[], Awaitable[object]],
        housekeeping_seconds: float = 5.0,
    ) -> None:
        self._sm = sessionmaker
        self._start_campaign = start_campaign
        self._wake_dispatcher = wake_dispatcher
        self._housekeeping = housekeeping
        self._housekeeping_seconds = housekeeping_seconds
        # Jobs live in memory only: every node rebuilds them from the database.
        self._jobs = TaskSet()
        self._aps = AsyncIOScheduler(timezone=UTC, job_defaults={"misfire_grace_time": None})

    @property
    def running(self) -> bool:
        return bool(self._aps.running)

    async def start(self) -> None:
        self._aps.start()
        self._aps.add_job(
            self._tracked(self._housekeeping),
            IntervalTrigger(seconds=self._housekeeping_seconds),
            id="housekeeping",
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
        )
        async with self._sm() as session:
            scheduled = (
                await session.execute(
                    select(Campaign.id, Campaign.start_at).where(
                        Campaign.status == CampaignStatus.SCHEDULED
                    )
                )
            ).all()
        for campaign_id, start_at in scheduled:
            self.schedule_campaign_start(campaign_id, start_at or utcnow())
        async with self._sm() as session:
            recurring_ids = list(
                await session.scalars(
                    select(Campaign.id).where(
                        Campaign.schedule_cron.is_not(None),
                        Campaign.status.in_((CampaignStatus.RUNNING, CampaignStatus.COMPLETED)),
                    )
                )
            )
        for campaign_id in recurring_ids:
            await self.schedule_recurring(campaign_id)

    def _tracked(self, job: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
        """Run ``job`` as a task that shutdown can wait for (the scheduler's own wait=True
        does not cover coroutine jobs)."""

        async def run() -> None:
            await self._jobs.spawn(job())

        return run

    @property
    def job_count(self) -> int:
        """Jobs planned in memory: a few per campaign, none per call."""
        return len(self._aps.get_jobs())

    def shutdown(self) -> None:
        if self._aps.running:
            self._aps.shutdown(wait=False)

    async def drain(self, grace_seconds: float = 10.0) -> None:
        """Let jobs already running finish (or stop them) before what they use goes away."""
        self.shutdown()
        await self._jobs.drain(grace_seconds)

    def schedule_campaign_start(self, campaign_id: str, at: datetime) -> None:
        self._aps.add_job(
            self._start_campaign,
            DateTrigger(run_date=to_real(max(at, utcnow()))),
            args=[campaign_id],
            id=f"campaign-start:{campaign_id}",
            replace_existing=True,
        )

    async def schedule_recurring(self, campaign_id: str, after: datetime | None = None) -> None:
        """Plan a recurring campaign's next firing at its exact cron instant.

        A firing missed while no node ran (the instant is past) is released at once, once: its
        key is the scheduled instant, so whichever node releases it first is the only one.
        """
        async with self._sm() as session:
            campaign = await session.get(Campaign, campaign_id)
            if campaign is None or not campaign.schedule_cron:
                return
            if campaign.status not in (CampaignStatus.RUNNING, CampaignStatus.COMPLETED):
                return
            last = await session.scalar(
                select(func.max(ScheduleFiring.fire_at)).where(
                    ScheduleFiring.campaign_id == campaign_id
                )
            )
            after = max(t for t in (after, last, campaign.started_at, campaign.created_at) if t)
            fire_at = recurring.latest_due(campaign, after, utcnow())
        if fire_at is None:
            return
        self._aps.add_job(
            self._fire,
            DateTrigger(run_date=to_real(max(fire_at, utcnow()))),
            args=[campaign_id, fire_at],
            id=f"campaign-cron:{campaign_id}",
            replace_existing=True,
        )

    async def _fire(self, campaign_id: str, fire_at: datetime) -> None:
        released = await recurring.release(self._sm, campaign_id, fire_at)
        if released:
            log.info("campaign %s: firing %s released %d contacts", campaign_id, fire_at, released)
            self._wake_dispatcher()
        # Never the same instant again, even when a paused campaign skipped it.
        await self.schedule_recurring(campaign_id, after=fire_at)

    def wake_dispatcher_at(self, at: datetime | None) -> None:
        """Keep exactly one wake-up job, at the next instant a contact becomes due."""
        if at is None:
            if self._aps.get_job(WAKEUP_JOB) is not None:
                self._aps.remove_job(WAKEUP_JOB)
            return
        # A due instant already past is handled by the pass that is running now.
        at = max(at, utcnow() + timedelta(milliseconds=5))
        self._aps.add_job(
            self._wake_dispatcher,
            DateTrigger(run_date=to_real(at)),
            id=WAKEUP_JOB,
            replace_existing=True,
        )
