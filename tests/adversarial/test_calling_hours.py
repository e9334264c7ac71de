"""Issue 11, points 12 and 13: no dial reaches the carrier after a calling window has closed, and
a number with no place of its own (toll-free) is called in the campaign's own hours.

The oracle here is the test's own: each number's zones come straight from phonenumbers' time-zone
data and zoneinfo, and the calling hours from the tables below, written out again from the rules
(47 CFR 64.1200(c)(1) and Kentucky's stricter hours) rather than read from the service's code.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
import pytest
from phonenumbers.timezone import time_zones_for_number

from tests.campaign_flow import campaign, contacts_csv, create_campaign, start, upload
from tests.service import Service, wait_until

EVERY_DAY = [0, 1, 2, 3, 4, 5, 6]

# Last two digits 70-79 never answer, 80-84 are always busy (README, "The sandbox carrier"):
# every contact keeps retrying until a window closes on it.
NEVER_ANSWER = range(70, 85)


def fictional(area_codes: tuple[str, ...]) -> list[str]:
    """NANP numbers of the 555-01xx block (reserved for fiction) that never answer."""
    return [f"+1{area}5550{100 + last}" for area in area_codes for last in NEVER_ANSWER]


GEORGIA_NEW_YORK = ("404", "678", "770", "470", "212", "646")
KENTUCKY = ("502", "859", "606", "270")
NEWFOUNDLAND = ("709", "879")
NAIROBI = [f"+25420{2000000 + block * 1000 + last}" for block in range(4) for last in NEVER_ANSWER]

# The oracle's calling hours, local time of every zone of the number.
FEDERAL = (time(8), time(21))
KENTUCKY_HOURS = (time(10), time(21))
NAIROBI_HOURS = (time(9), time(18))
ST_JOHNS_HOURS = (time(9), time(12, 30))


def oracle_hours(number: str) -> tuple[time, time]:
    if number.startswith("+254"):
        return NAIROBI_HOURS
    area = number[2:5]
    if area in NEWFOUNDLAND:
        return ST_JOHNS_HOURS
    if area in KENTUCKY:
        return KENTUCKY_HOURS
    return FEDERAL


def oracle_zones(number: str) -> list[ZoneInfo]:
    return [ZoneInfo(name) for name in time_zones_for_number(phonenumbers.parse(number))]


def inside(number: str, instant: datetime) -> bool:
    start, end = oracle_hours(number)
    return all(start <= instant.astimezone(z).time() < end for z in oracle_zones(number))


def to_close(number: str, instant: datetime) -> timedelta:
    """How long before the number's window closes ``instant`` is (negative: after it)."""
    _, end = oracle_hours(number)
    gaps = []
    for tz in oracle_zones(number):
        local = instant.astimezone(tz)
        close = datetime.combine(local.date(), end, tzinfo=tz)
        if close - local > timedelta(hours=12):  # the instant is past yesterday's close
            close -= timedelta(days=1)
        gaps.append(close.astimezone(UTC) - instant)
    return min(gaps)


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Plan:
    """One campaign of a rehearsal: its numbers and what makes its window."""

    numbers: list[str]
    cps: float
    rule_set: str | None = None
    calling_periods: list[dict[str, Any]] | None = None
    # The next opening the contacts must be re-planned to once the window has closed.
    reopens: datetime | None = None


@dataclass(frozen=True)
class Rehearsal:
    name: str
    close: datetime  # UTC
    plans: tuple[Plan, ...]


def us_tcpa_at_nine_pm(name: str, close: datetime, opens: datetime) -> Rehearsal:
    """21:00 Eastern: the federal limit (Georgia, New York) and Kentucky's, under us_tcpa.

    ``opens`` is 08:00 Eastern the next morning (Kentucky opens two hours later, at 10:00).
    """
    return Rehearsal(
        name,
        close,
        (
            Plan(fictional(GEORGIA_NEW_YORK), cps=20, rule_set="us_tcpa", reopens=opens),
            Plan(
                fictional(KENTUCKY),
                cps=16,
                rule_set="us_tcpa",
                reopens=opens + timedelta(hours=2),
            ),
        ),
    )


def nairobi_and_st_johns(name: str, close: datetime) -> Rehearsal:
    """15:00 UTC while Newfoundland keeps summer time: 18:00 in Nairobi and 12:30 in St John's
    close at the same instant."""
    next_day = close.date() + timedelta(days=1)
    return Rehearsal(
        name,
        close,
        (
            Plan(
                NAIROBI,
                cps=20,
                calling_periods=[{"weekdays": EVERY_DAY, "start": "09:00", "end": "18:00"}],
                reopens=datetime.combine(next_day, time(6), tzinfo=UTC),  # 09:00 EAT
            ),
            Plan(
                fictional(NEWFOUNDLAND),
                cps=12,
                calling_periods=[{"weekdays": EVERY_DAY, "start": "09:00", "end": "12:30"}],
                # 709 numbers also carry Halifax, 879 numbers Puerto Rico: the first contacts
                # to reopen are the 709 ones, at 09:00 in Halifax (ADT).
                reopens=datetime.combine(next_day, time(12), tzinfo=UTC),
            ),
        ),
    )


# Played in this order until the dials reach MIN_DIALS: the first two on the days North America
# changes its clocks (both rehearsals run on the shifted clock of a service of their own).
REHEARSALS = (
    # Sunday 7 November 2027, the day clocks fall back: 21:00 EST is 02:00 UTC.
    us_tcpa_at_nine_pm(
        "21:00 EST on the fall-back day, us_tcpa",
        datetime(2027, 11, 8, 2, 0, tzinfo=UTC),
        opens=datetime(2027, 11, 8, 13, 0, tzinfo=UTC),
    ),
    # Sunday 14 March 2027, the day clocks spring forward in Newfoundland (Nairobi keeps EAT).
    nairobi_and_st_johns(
        "18:00 Nairobi, 12:30 St John's on the spring-forward day",
        datetime(2027, 3, 14, 15, 0, tzinfo=UTC),
    ),
    # Wednesday 14 July 2027, summer time.
    us_tcpa_at_nine_pm(
        "21:00 EDT, us_tcpa",
        datetime(2027, 7, 15, 1, 0, tzinfo=UTC),
        opens=datetime(2027, 7, 15, 12, 0, tzinfo=UTC),
    ),
    nairobi_and_st_johns(
        "18:00 Nairobi, 12:30 St John's in summer", datetime(2027, 7, 14, 15, 0, tzinfo=UTC)
    ),
    # Only a machine too busy to dial at the cps above gets this far.
    us_tcpa_at_nine_pm(
        "21:00 EST in winter, us_tcpa",
        datetime(2027, 1, 14, 2, 0, tzinfo=UTC),
        opens=datetime(2027, 1, 14, 13, 0, tzinfo=UTC),
    ),
    nairobi_and_st_johns(
        "18:00 Nairobi, 12:30 St John's in autumn", datetime(2027, 10, 13, 15, 0, tzinfo=UTC)
    ),
)
MIN_DIALS = 1000
# Shifted-clock seconds before the close at which each rehearsal's service starts; the campaigns
# dial for most of them. On an idle machine two rehearsals make well over MIN_DIALS (the cps
# above); a busy one dials more slowly and plays more of them.
LEAD_SECONDS = 32
AFTER_CLOSE = timedelta(seconds=3)
RETRY_AT_ONCE = {"delays": [0]}


@dataclass
class Played:
    rehearsal: Rehearsal
    calls: list[dict[str, Any]]
    stopped_before_send: int
    next_calls: list[tuple[Plan, str, dict[str, Any]]]


def rehearse(database_url: str, tmp_path: Path, rehearsal: Rehearsal) -> Played:
    offset = (rehearsal.close - timedelta(seconds=LEAD_SECONDS) - datetime.now(UTC)).total_seconds()
    service = Service(
        database_url,
        tmp_path,
        CALLBRIDGE_CLOCK_OFFSET_SECONDS=str(offset),
        CALLBRIDGE_SANDBOX_RING_SECONDS="0.05",
    ).start()
    try:
        before = {c["sid"] for c in service.sandbox_calls()}
        ids = []
        for plan in rehearsal.plans:
            campaign_id = create_campaign(
                service,
                cps=plan.cps,
                concurrency=200,
                max_attempts=20,
                retry_rules={"busy": RETRY_AT_ONCE, "no_answer": RETRY_AT_ONCE},
                rule_set=plan.rule_set,
                calling_periods=plan.calling_periods,
                timezone="UTC",
            )
            report = upload(service, campaign_id, contacts_csv(plan.numbers))
            assert report["accepted"] == len(plan.numbers), report
            ids.append(campaign_id)
        for campaign_id in ids:
            start(service, campaign_id)
        closed_at_real = rehearsal.close + AFTER_CLOSE - timedelta(seconds=offset)
        wait_until(
            lambda: (
                datetime.now(UTC) >= closed_at_real
                and all(campaign(service, c)["counts"]["in_progress"] == 0 for c in ids)
            ),
            timeout=LEAD_SECONDS + 60,
            what=f"the {rehearsal.name} close to pass and its last calls to end",
        )
        calls = [c for c in service.sandbox_calls() if c["sid"] not in before]
        stopped = 0
        for campaign_id in ids:
            response = service.api(
                "GET", f"/api/v1/campaigns/{campaign_id}/calls?status=not_placed&per_page=1"
            )
            stopped += int(response.headers["X-Total-Count"])
        next_calls = [
            (p, c, campaign(service, c)) for p, c in zip(rehearsal.plans, ids, strict=True)
        ]
        return Played(rehearsal, calls, stopped, next_calls)
    finally:
        service.stop()


@pytest.fixture
def played(database_url: str, tmp_path: Path) -> Iterator[list[Played]]:
    runs: list[Played] = []
    for rehearsal in REHEARSALS:
        if sum(len(run.calls) for run in runs) >= MIN_DIALS:
            break
        runs.append(rehearse(database_url, tmp_path, rehearsal))
    yield runs


def test_no_dial_reaches_the_carrier_after_a_window_has_closed(played: list[Played]) -> None:
    """Attack: contacts retry as fast as pacing lets them while windows close (21:00 Eastern,
    the federal limit and Kentucky's, under us_tcpa for Georgia, New York and Kentucky; 18:00 in
    Nairobi and 12:30 in St John's; on the days North America changes its clocks first), with
    dials claimed up to two seconds ahead of their pacing slot. Promise: not one of over 1,000
    dials reaches the carrier after the window has closed in any candidate zone of its number,
    and the contacts the close stops are planned for their window's next opening."""
    total = 0
    late: list[tuple[str, str, float]] = []
    closest = timedelta.max
    for run in played:
        gaps = [(c, to_close(c["to"], parse(c["created_at"]))) for c in run.calls]
        for call, gap in gaps:
            if not inside(call["to"], parse(call["created_at"])):
                late.append((run.rehearsal.name, call["to"], -gap.total_seconds()))
        before = [gap for _, gap in gaps if gap > timedelta(0)]
        run_closest = min(before, default=timedelta.max)
        closest = min(closest, run_closest)
        total += len(run.calls)
        print(
            f"{run.rehearsal.name}: {len(run.calls)} dials, "
            f"{sum(1 for r in late if r[0] == run.rehearsal.name)} after a close, "
            f"closest before a close {run_closest.total_seconds() * 1000:.0f} ms, "
            f"{run.stopped_before_send} attempts stopped before the send"
        )
    print(f"all: {total} dials, {len(late)} after a close, closest {closest.total_seconds():.3f} s")
    assert total >= MIN_DIALS
    assert late == [], f"{len(late)} dials after a close (rehearsal, number, seconds late): {late}"
    for run in played:
        for plan, _campaign_id, state in run.next_calls:
            # Nobody is given up on because of the close: all wait for the next opening.
            assert state["counts"]["dispositions"].get("expired", 0) == 0, state
            assert state["counts"]["pending"] == len(plan.numbers), state
            assert parse(state["next_call_at"]) == plan.reopens, (run.rehearsal.name, state)


def test_a_toll_free_number_is_called_in_the_campaigns_own_hours(
    database_url: str, tmp_path: Path
) -> None:
    """Attack: a toll-free number, which phonenumbers places in all 42 zones of the NANP (Guam to
    St John's, 21 hours apart), on a campaign with a 09:00-17:00 window: no instant is inside it
    everywhere, and the contact used to end `expired` without a single dial. Promise: a number
    with no place of its own follows the campaign's time zone, as a number of unknown zone
    does: it is dialled once the window opens there, and its call runs to its real outcome."""
    chicago = ZoneInfo("America/Chicago")
    opens = datetime(2027, 1, 13, 9, 0, tzinfo=chicago)  # a Wednesday
    shown = opens - timedelta(seconds=8)
    offset = (shown - datetime.now(UTC)).total_seconds()
    service = Service(database_url, tmp_path, CALLBRIDGE_CLOCK_OFFSET_SECONDS=str(offset)).start()
    try:
        # Last two digits 00-59: a person answers (the README's sandbox table).
        toll_free = ["+18005550142", "+18885550143"]
        campaign_id = create_campaign(
            service,
            timezone="America/Chicago",
            calling_periods=[{"weekdays": EVERY_DAY, "start": "09:00", "end": "17:00"}],
        )
        report = upload(service, campaign_id, contacts_csv(toll_free))
        assert report["accepted"] == 2, report
        start(service, campaign_id)
        state = wait_until(
            lambda: (s := campaign(service, campaign_id))["status"] == "completed" and s,
            timeout=60,
            what="the campaign to complete",
        )
        assert state["counts"]["dispositions"].get("expired", 0) == 0, state
        assert state["counts"]["dispositions"]["answered"] == 2, state
        calls = [c for c in service.sandbox_calls() if c["to"] in toll_free]
        assert sorted(c["to"] for c in calls) == toll_free
        for call in calls:
            local = parse(call["created_at"]).astimezone(chicago)
            # Inside the campaign zone's window, and not before it opened there (New York's
            # 09:00, an hour earlier, would not do).
            assert opens <= local < opens.replace(hour=17), local
    finally:
        service.stop()
