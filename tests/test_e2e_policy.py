"""Campaign policy end to end, against `callbridge serve` and its sandbox: local-time windows,
do-not-call, pause/resume/cancel, idempotent single calls and on-time reminders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.campaign_flow import campaign, contacts_csv, create_campaign, start, upload
from tests.service import Service, wait_until

EVERY_DAY = [0, 1, 2, 3, 4, 5, 6]
NINE_TO_FIVE = [{"weekdays": EVERY_DAY, "start": "09:00", "end": "17:00"}]
ZONES = {"212": "America/New_York", "310": "America/Los_Angeles", "808": "Pacific/Honolulu"}


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def calls_to(service: Service, number: str) -> list[dict[str, Any]]:
    return [c for c in service.sandbox_calls() if c["to"] == number]


def test_each_recipient_is_called_only_inside_its_own_local_window(
    database_url: str, tmp_path: Path
) -> None:
    # Rehearse a Wednesday when it is 08:59:45 in Los Angeles: New York (11:59) is inside its
    # window, Los Angeles opens 15 seconds later, Honolulu (06:59) only in two hours.
    shown = datetime(2027, 1, 13, 16, 59, 45, tzinfo=UTC)
    offset = (shown - datetime.now(UTC)).total_seconds()
    service = Service(database_url, tmp_path, CALLBRIDGE_CLOCK_OFFSET_SECONDS=str(offset)).start()
    try:
        phones = [f"+1{area}5550{100 + i}" for area in ZONES for i in range(3)]
        campaign_id = create_campaign(service, calling_periods=NINE_TO_FIVE, timezone="UTC")
        upload(service, campaign_id, contacts_csv(phones))
        start(service, campaign_id)
        mainland = [p for p in phones if not p.startswith("+1808")]
        wait_until(
            lambda: {c["to"] for c in service.sandbox_calls()} >= set(mainland),
            timeout=60,
            what="New York and Los Angeles to be dialled",
        )
        calls = service.sandbox_calls()
        for call in calls:
            local = parse(call["created_at"]).astimezone(ZoneInfo(ZONES[call["to"][2:5]]))
            assert 9 <= local.hour < 17, (call["to"], local)
        la_opens = datetime(2027, 1, 13, 17, 0, tzinfo=UTC)
        new_york = [parse(c["created_at"]) for c in calls if c["to"].startswith("+1212")]
        los_angeles = [parse(c["created_at"]) for c in calls if c["to"].startswith("+1310")]
        assert max(new_york) < la_opens  # not held back by the other zones' windows
        assert min(los_angeles) >= la_opens
        assert max(los_angeles) < la_opens + timedelta(seconds=3)
        assert not [c for c in calls if c["to"].startswith("+1808")]
        # Honolulu's 09:00 is 19:00 UTC: that is when the campaign's next call is planned.
        state = wait_until(
            lambda: (s := campaign(service, campaign_id))["counts"]["in_progress"] == 0 and s,
            timeout=30,
            what="the mainland calls to end",
        )
        assert parse(state["next_call_at"]) == datetime(2027, 1, 13, 19, 0, tzinfo=UTC)
        assert state["counts"]["pending"] == 3
    finally:
        service.stop()


def test_a_number_put_on_do_not_call_mid_campaign_is_never_dialled_again(
    service: Service,
) -> None:
    # Last digits 70-79: no answer, so the number would be retried twice more.
    target = "+12125550170"
    others = [f"+12125550{100 + i}" for i in range(8)]
    campaign_id = create_campaign(service, concurrency=1, retry_delay_seconds=1)
    upload(service, campaign_id, contacts_csv([target, *others]))
    start(service, campaign_id)
    wait_until(lambda: calls_to(service, target), timeout=60, what="the first dial")
    response = service.api(
        "POST", "/api/v1/dnc", json={"phone_number": target, "campaign_id": campaign_id}
    )
    assert response.status_code == 201, response.text
    dialled_before = len(calls_to(service, target))
    wait_until(
        lambda: campaign(service, campaign_id)["status"] == "completed",
        timeout=90,
        what="the campaign to complete",
    )
    assert len(calls_to(service, target)) == dialled_before == 1
    rows = service.api("GET", f"/api/v1/campaigns/{campaign_id}/export.csv").text
    assert f"{target},ext-0,dnc," in rows
    # A global entry keeps the number out of later imports too, with reason "dnc".
    listed = "+13105550111"
    assert service.api("POST", "/api/v1/dnc", json={"phone_number": listed}).status_code == 201
    second = create_campaign(service)
    report = upload(service, second, contacts_csv([listed, "+13105550112"]))
    assert report["accepted"] == 1
    assert report["errors"] == [{"row": 2, "value": listed, "reason": "dnc"}]


def test_pause_resume_and_cancel_show_in_the_sandbox_log(service: Service) -> None:
    phones = [f"+1{area}5550{100 + i}" for area in ("212", "646") for i in range(30)]
    campaign_id = create_campaign(service, concurrency=2)
    upload(service, campaign_id, contacts_csv(phones))
    start(service, campaign_id)
    wait_until(lambda: len(service.sandbox_calls()) >= 4, timeout=60, what="4 dials")

    assert service.api("POST", f"/api/v1/campaigns/{campaign_id}/pause").json()["status"] == (
        "paused"
    )
    paused_at = datetime.now(UTC)
    wait_until(
        lambda: campaign(service, campaign_id)["counts"]["in_progress"] == 0,
        timeout=30,
        what="live calls to finish after the pause",
    )
    resumed = service.api("POST", f"/api/v1/campaigns/{campaign_id}/resume")
    assert resumed.json()["status"] == "running"
    resumed_at = datetime.now(UTC)
    dialled_while_paused = [
        c for c in service.sandbox_calls() if paused_at < parse(c["created_at"]) < resumed_at
    ]
    assert dialled_while_paused == []
    count = len(service.sandbox_calls())
    wait_until(lambda: len(service.sandbox_calls()) >= count + 4, timeout=60, what="dials resume")

    cancelled = service.api("POST", f"/api/v1/campaigns/{campaign_id}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    cancelled_at = datetime.now(UTC)
    state = wait_until(
        lambda: (s := campaign(service, campaign_id))["counts"]["in_progress"] == 0 and s,
        timeout=30,
        what="live calls to finish after the cancel",
    )
    assert [c for c in service.sandbox_calls() if parse(c["created_at"]) > cancelled_at] == []
    assert state["status"] == "cancelled"
    assert state["counts"]["pending"] == 0
    assert state["counts"]["dispositions"]["cancelled"] == 60 - len(service.sandbox_calls())
    conflict = service.api("POST", f"/api/v1/campaigns/{campaign_id}/resume")
    assert conflict.status_code == 409


def test_one_idempotency_key_places_one_call(service: Service) -> None:
    body = {"to": "+1 212 555 0142", "agent_id": "agent_a", "dynamic_variables": {"name": "Ada"}}
    headers = {"Idempotency-Key": "order-4711-reminder"}
    first = service.api("POST", "/api/v1/calls", json=body, headers=headers)
    second = service.api("POST", "/api/v1/calls", json=body, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    call_id = first.json()["id"]
    done = wait_until(
        lambda: (c := service.api("GET", f"/api/v1/calls/{call_id}").json())["disposition"] and c,
        timeout=60,
        what="the call to finish",
    )
    assert done["disposition"] == "answered" and len(done["attempts"]) == 1
    assert len(calls_to(service, "+12125550142")) == 1
    # Without a key, the same request is a new call.
    third = service.api("POST", "/api/v1/calls", json=body)
    assert third.status_code == 201 and third.json()["id"] != call_id


def test_a_reminder_is_dialled_within_a_second_of_its_call_at(service: Service) -> None:
    call_at = datetime.now(UTC) + timedelta(seconds=5)
    response = service.api(
        "POST",
        "/api/v1/calls",
        json={"to": "+13125550123", "agent_id": "agent_r", "call_at": call_at.isoformat()},
    )
    assert response.status_code == 201, response.text
    assert calls_to(service, "+13125550123") == []
    calls = wait_until(lambda: calls_to(service, "+13125550123"), timeout=30, what="the reminder")
    lateness = (parse(calls[0]["created_at"]) - call_at).total_seconds()
    assert 0 <= lateness <= 1.0, lateness


def test_bad_policies_are_refused_at_creation(service: Service) -> None:
    inverted = [{"weekdays": [0], "start": "17:00", "end": "09:00"}]
    response = service.api(
        "POST", "/api/v1/campaigns", json={"name": "x", "calling_periods": inverted}
    )
    assert response.status_code == 422
    assert "inverted" in response.json()["error"]["message"]
    response = service.api(
        "POST",
        "/api/v1/campaigns",
        json={"name": "x", "retry_rules": {"busy": {"delays": [-5]}}},
    )
    assert response.status_code == 422


def test_a_removed_contact_is_not_dialled(service: Service) -> None:
    campaign_id = create_campaign(service)
    upload(service, campaign_id, contacts_csv(["+12025550101", "+12025550102"]))
    contacts = service.api("GET", f"/api/v1/campaigns/{campaign_id}/contacts").json()
    removed = next(c for c in contacts if c["phone_number"] == "+12025550101")
    response = service.api("DELETE", f"/api/v1/campaigns/{campaign_id}/contacts/{removed['id']}")
    assert response.status_code == 200 and response.json()["disposition"] == "removed"
    start(service, campaign_id)
    wait_until(
        lambda: campaign(service, campaign_id)["status"] == "completed", timeout=60, what="done"
    )
    assert calls_to(service, "+12025550101") == []
    assert len(calls_to(service, "+12025550102")) == 1


@pytest.mark.parametrize("policy", ["hang_up", "leave_message"])
def test_voicemail_policy(database_url: str, tmp_path: Path, policy: str) -> None:
    # The machine keeps recording for a minute, as a real one would: it is the policy that ends
    # the call, however long the service takes to act on the detection.
    service = Service(database_url, tmp_path, CALLBRIDGE_SANDBOX_TALK_SECONDS="60").start()
    try:
        _voicemail_policy(service, policy)
    finally:
        service.stop()


def _voicemail_policy(service: Service, policy: str) -> None:
    # Last digits 60-69: an answering machine, with the end of its greeting detected.
    phone = "+12125550164"
    message = "Hello {{first_name}}, this is your reminder. Please call us back."
    campaign_id = create_campaign(
        service, voicemail_policy=policy, voicemail_message=message, max_attempts=1
    )
    upload(service, campaign_id, contacts_csv([phone]))
    start(service, campaign_id)
    wait_until(
        lambda: campaign(service, campaign_id)["status"] == "completed", timeout=60, what="done"
    )
    attempt = service.api("GET", f"/api/v1/campaigns/{campaign_id}/calls").json()[0]
    (call,) = calls_to(service, phone)
    played = service.http.get(f"{service.url}/sandbox/calls/{call['sid']}/twiml").json()
    rows = service.api("GET", f"/api/v1/campaigns/{campaign_id}/export.csv").text
    if policy == "hang_up":
        assert attempt["voicemail_action"] == "hung_up"
        assert played == []
        assert f"{phone},ext-0,voicemail," in rows
    else:
        assert attempt["voicemail_action"] == "message_left"
        assert len(played) == 1
        assert "<Say>Hello Person 0, this is your reminder. Please call us back.</Say>" in played[0]
        assert played[0].rstrip().endswith("<Hangup /></Response>")
        assert f"{phone},ext-0,voicemail_left," in rows
    assert call["answered_by"] == "machine_end_beep" and call["status"] == "completed"


def test_after_repeated_failures_the_next_number_is_tried(service: Service) -> None:
    # First numbers that never answer (80-84 busy, 70-79 no answer); second numbers that do.
    rows = [
        "phone_number,id,phone_number_2,phone_number_3",
        "+12125550180,a,+13125550100,",
        "+12125550171,b,not a number,+13125550101",
    ]
    campaign_id = create_campaign(service, max_failures_per_number=2, retry_delay_seconds=1)
    report = upload(service, campaign_id, ("\n".join(rows) + "\n").encode())
    assert report["accepted"] == 2
    start(service, campaign_id)
    wait_until(
        lambda: campaign(service, campaign_id)["status"] == "completed", timeout=90, what="done"
    )
    export = service.api("GET", f"/api/v1/campaigns/{campaign_id}/export.csv").text
    # Two failures on the first number, then the next usable number answers on attempt 3.
    assert "+12125550180,a,answered,3," in export
    assert "+12125550171,b,answered,3," in export
    assert len(calls_to(service, "+12125550180")) == 2
    assert len(calls_to(service, "+13125550100")) == 1
    assert len(calls_to(service, "+12125550171")) == 2
    assert len(calls_to(service, "+13125550101")) == 1
    # The alternates are numbers, not variables for the agent.
    assert "phone_number_2" not in export.splitlines()[0]
