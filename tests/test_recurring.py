"""Recurring campaigns: every firing releases the named list once, even when released twice at
the same time (a restart, a second node), and the service keeps firing on schedule."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from campaigns import recurring
from campaigns.lifecycle import CampaignSpec, create_campaign, start_now
from campaigns.models import Contact, ScheduleFiring
from tests.campaign_flow import campaign, contacts_csv, start
from tests.campaign_flow import create_campaign as create_via_api
from tests.service import Service, wait_until

LIST = contacts_csv(["+12125550101", "+12125550102", "+12125550103"])


async def test_one_firing_is_released_once_however_often_it_is_asked(sm) -> None:  # type: ignore[no-untyped-def]
    report = await recurring.replace_list(sm, "today", io.BytesIO(LIST), default_region="US")
    assert report.accepted == 3
    spec = CampaignSpec(name="daily", schedule_cron="0 8 * * 1-5", schedule_list="today")
    created = await create_campaign(sm, spec, {"stream": ()})
    await start_now(sm, created.id)
    monday_8am = datetime(2027, 1, 11, 8, 0, tzinfo=UTC)  # the campaign reads cron in UTC
    # Two nodes (or a node and its restarted self) release the same firing at once.
    released = await asyncio.gather(
        *(recurring.release(sm, created.id, monday_8am) for _ in range(4))
    )
    assert sorted(released) == [0, 0, 0, 3]
    assert await recurring.release(sm, created.id, monday_8am) == 0
    assert await recurring.release(sm, created.id, monday_8am + timedelta(days=1)) == 3
    async with sm() as session:
        contacts = await session.scalar(
            select(func.count()).select_from(Contact).where(Contact.campaign_id == created.id)
        )
        firings = await session.scalar(select(func.count()).select_from(ScheduleFiring))
    assert (contacts, firings) == (6, 2)


def test_cron_is_read_in_the_campaigns_zone_and_missed_firings_are_not_replayed() -> None:
    from campaigns.models import Campaign

    daily = Campaign(id="c", schedule_cron="0 8 * * 1-5", timezone="America/New_York")
    friday_night = datetime(2027, 1, 15, 23, 0, tzinfo=UTC)
    # Next weekday 08:00 in New York (EST, UTC-5) is Monday 13:00 UTC.
    assert recurring.next_fire(daily, friday_night) == datetime(2027, 1, 18, 13, 0, tzinfo=UTC)
    # Down from Monday to Thursday noon: only Thursday's firing is released, not four.
    now = datetime(2027, 1, 21, 17, 0, tzinfo=UTC)
    thursday_8am = datetime(2027, 1, 21, 13, 0, tzinfo=UTC)
    assert recurring.latest_due(daily, friday_night, now) == thursday_8am
    for bad in ("61 8 * * *", "0 8 * * 9", "0 8 * *"):
        with pytest.raises(recurring.ScheduleError):
            recurring.cron_trigger(bad, "UTC")
    # Crontab weekdays: 0 and 7 are Sunday.
    sundays = Campaign(id="s", schedule_cron="30 9 * * 0", timezone="UTC")
    assert recurring.next_fire(sundays, friday_night) == datetime(2027, 1, 17, 9, 30, tzinfo=UTC)


def test_a_recurring_campaign_releases_its_list_at_every_firing(
    database_url: str, tmp_path: Path
) -> None:
    service = Service(database_url, tmp_path).start()
    try:
        put = service.http.put(
            f"{service.url}/api/v1/lists/today",
            data=LIST,
            headers={"Content-Type": "text/csv"},
            timeout=30,
        )
        assert put.status_code == 200 and put.json()["accepted"] == 3, put.text
        # Every 4 seconds (a sixth, leading field gives seconds).
        campaign_id = create_via_api(service, schedule_cron="*/4 * * * * *", schedule_list="today")
        start(service, campaign_id)
        firings = wait_until(
            lambda: (
                (f := service.api("GET", f"/api/v1/campaigns/{campaign_id}/firings").json())
                and len(f) >= 2
                and f
            ),
            timeout=60,
            what="two firings",
        )
        service.kill()  # a restart must not release a firing again
        service.start()
        wait_until(
            lambda: (
                len(service.api("GET", f"/api/v1/campaigns/{campaign_id}/firings").json())
                >= len(firings) + 1
            ),
            timeout=60,
            what="a firing after the restart",
        )
        service.api("POST", f"/api/v1/campaigns/{campaign_id}/pause")
        wait_until(
            lambda: campaign(service, campaign_id)["counts"]["in_progress"] == 0,
            timeout=30,
            what="live calls to end",
        )
        released = service.api("GET", f"/api/v1/campaigns/{campaign_id}/firings").json()
        keys = [f["fire_at"] for f in released]
        assert len(keys) == len(set(keys))
        assert all(f["contacts"] == 3 for f in released)
        state = campaign(service, campaign_id)
        assert state["counts"]["contacts"] == 3 * len(released)
        dialled = [c for c in service.sandbox_calls() if c["to"].startswith("+121255501")]
        assert len(dialled) == state["counts"]["attempts"]
        assert len(dialled) <= 3 * len(released)
    finally:
        service.stop()
