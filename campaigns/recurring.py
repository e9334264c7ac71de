"""Recurring campaigns: a cron schedule releases a named contact list as a new batch.

Each firing is keyed by its scheduled instant; the key is inserted in the same transaction as the
batch, so a restart, a late timer or a second node can never release the same firing twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import BinaryIO

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns.clock import utcnow
from campaigns.ids import new_id
from campaigns.intake.contacts import dry_run_batches
from campaigns.intake.report import ImportReport, RowError
from campaigns.models import (
    Campaign,
    CampaignStatus,
    Contact,
    ContactListEntry,
    ScheduleFiring,
)
from campaigns.phones import CHOOSABLE_NUMBER_TYPES, number_type_name, number_types_of
from campaigns.sqlutil import insert_ignoring_conflicts
from campaigns.windows import WindowError, zone

CRON_FIELDS = ("minute", "hour", "day", "month", "day_of_week")


class ScheduleError(ValueError):
    pass


_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _crontab_weekdays(field: str) -> str:
    """Crontab weekday numbers (0 or 7 = Sunday) as names: APScheduler 3 counts from Monday = 0."""
    parts = []
    for item in field.split(","):
        days, _, step = item.partition("/")
        if not days.replace("-", "").isdigit():
            parts.append(item)  # "*", "*/2", names: the same in both
            continue
        first, _, last = days.partition("-")
        numbers = range(int(first), int(last or first) + 1, int(step or 1))
        if not all(0 <= n <= 7 for n in numbers) or not numbers:
            raise ScheduleError(f"weekday {item!r} is not 0-7 (0 and 7 are Sunday)")
        parts.extend(_WEEKDAYS[n % 7] for n in numbers)
    return ",".join(parts)


def cron_trigger(expression: str, timezone: str) -> CronTrigger:
    """A crontab read in ``timezone``: 5 fields, or 6 with seconds first."""
    fields = expression.split()
    names = CRON_FIELDS if len(fields) == 5 else ("second", *CRON_FIELDS)
    if len(fields) not in (5, 6):
        raise ScheduleError("schedule_cron needs 5 fields (minute hour day month weekday)")
    values = dict(zip(names, fields, strict=True))
    values["day_of_week"] = _crontab_weekdays(values["day_of_week"])
    try:
        return CronTrigger(**values, timezone=zone(timezone))
    except (ValueError, WindowError) as exc:
        raise ScheduleError(f"schedule_cron is not a valid crontab: {exc}") from exc


def next_fire(campaign: Campaign, after: datetime) -> datetime | None:
    """The first firing strictly after ``after`` (cron instants are whole seconds)."""
    if not campaign.schedule_cron:
        return None
    trigger = cron_trigger(campaign.schedule_cron, campaign.timezone)
    # The trigger answers "at or after"; a firing must never be its own successor.
    following = trigger.get_next_fire_time(None, after + timedelta(seconds=1))
    return following.astimezone(UTC) if following is not None else None


# How many missed firings are stepped over, at most, to find the latest one.
MAX_SKIPPED_FIRINGS = 100_000


def latest_due(campaign: Campaign, after: datetime, now: datetime) -> datetime | None:
    """The next firing after ``after``; if several were missed, only the latest of them."""
    fire_at = next_fire(campaign, after)
    for _ in range(MAX_SKIPPED_FIRINGS):
        if fire_at is None or fire_at >= now:
            break
        following = next_fire(campaign, fire_at)
        if following is None or following > now:
            break
        fire_at = following
    return fire_at


async def release(sm: async_sessionmaker[AsyncSession], campaign_id: str, fire_at: datetime) -> int:
    """Release one firing's batch. Returns the contacts added (0 if it was released before)."""
    now = utcnow()
    async with sm.begin() as session:
        campaign = await session.get(Campaign, campaign_id, with_for_update=True)
        if campaign is None or campaign.status not in (
            CampaignStatus.RUNNING,
            CampaignStatus.COMPLETED,
        ):
            return 0
        claimed = await session.execute(
            insert_ignoring_conflicts(
                session,
                ScheduleFiring.__table__,  # type: ignore[arg-type]
                {"campaign_id": campaign_id, "fire_at": fire_at, "contacts": 0, "released_at": now},
            )
        )
        if claimed.scalar_one_or_none() is None:
            return 0
        number_types = number_types_of(campaign.allowed_number_types)
        entries = [
            entry
            for entry in await session.scalars(
                select(ContactListEntry).where(ContactListEntry.list_name == campaign.schedule_list)
            )
            if number_type_name(entry.phone_number) in number_types
        ]
        # The firing is the batch's scope: the same person is called again at the next firing.
        scope = f"f{fire_at:%Y%m%d%H%M%S}"
        for entry in entries:
            session.add(
                Contact(
                    id=new_id("ct"),
                    campaign_id=campaign_id,
                    phone_number=entry.phone_number,
                    dedupe_scope=scope,
                    external_id=entry.external_id,
                    time_zones=list(entry.time_zones or []),
                    dynamic_variables=dict(entry.dynamic_variables or {}),
                    row_number=entry.row_number,
                    attempts_made=0,
                    next_attempt_at=now,
                )
            )
        await session.flush()
        await session.execute(
            ScheduleFiring.__table__.update()  # type: ignore[attr-defined]
            .where(ScheduleFiring.campaign_id == campaign_id, ScheduleFiring.fire_at == fire_at)
            .values(contacts=len(entries))
        )
        if entries:
            campaign.status = CampaignStatus.RUNNING
        return len(entries)


async def replace_list(
    sm: async_sessionmaker[AsyncSession],
    name: str,
    source: BinaryIO,
    *,
    default_region: str,
    phone_column: str = "phone_number",
) -> ImportReport:
    """Replace a named list's entries with a CSV's valid rows, all at once (or not at all)."""
    report = ImportReport()
    async with sm.begin() as session:
        await session.execute(delete(ContactListEntry).where(ContactListEntry.list_name == name))
        # A list belongs to no campaign: it keeps every type a campaign may call, and each
        # release leaves out the types its campaign does not call.
        for batch in dry_run_batches(
            source,
            default_region=default_region,
            phone_column=phone_column,
            report=report,
            number_types=CHOOSABLE_NUMBER_TYPES,
        ):
            for contact in batch:
                session.add(
                    ContactListEntry(
                        list_name=name,
                        phone_number=contact.e164,
                        external_id=contact.external_id,
                        time_zones=list(contact.time_zones),
                        dynamic_variables=contact.dynamic_variables,
                        row_number=contact.row,
                    )
                )
            await session.flush()
    return report


async def list_entries(session: AsyncSession, name: str) -> list[ContactListEntry]:
    return list(
        await session.scalars(
            select(ContactListEntry)
            .where(ContactListEntry.list_name == name)
            .order_by(ContactListEntry.id)
        )
    )


__all__ = ["RowError", "ScheduleError", "cron_trigger", "next_fire", "release", "replace_list"]
