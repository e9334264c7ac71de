"""Follow-ups the conversations ask for, end to end: 30 leads of an outbound campaign, created
through the official elevenlabs SDK against `callbridge serve`, whose sandbox people ask (by
number, bridge/sandbox/number_table.py FOLLOW_UP_TABLE) for a callback, a callback at night, another
number, an invalid number, or never to be called again. Run once with the requests read from
the post-call webhook's data collection results, once with the agent's client tools answered by
callbridge during the call; the effects are read in the sandbox carrier's call log and the
database."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from elevenlabs import ElevenLabs
from elevenlabs.types import (
    CallingIntervalPolicy,
    CallingPeriod,
    DataCollectionConfig,
    FollowupContextPolicy,
    PolicyConfigInput,
    RetryPolicy,
    SubmitCampaignRecipient,
)

from tests.databases import query_rows
from tests.service import API_KEY, Service, wait_until

# A Wednesday at noon in San Francisco (415): inside the 08:00-20:00 calling periods, and a
# callback "at 03:00 tomorrow" is outside them.
SHOWN = datetime(2027, 1, 13, 20, 0, tzinfo=UTC)
PHONE = {"channel": "phone", "agent_phone_number_id": "+15005550006"}
# Six people of each FOLLOW_UP_TABLE range.
CALLBACK = [f"+1415555{300 + i:04d}" for i in range(6)]
AT_NIGHT = [f"+1415555{310 + i:04d}" for i in range(6)]
REDIRECT = [f"+1415555{320 + i:04d}" for i in range(6)]
REDIRECT_INVALID = [f"+1415555{330 + i:04d}" for i in range(6)]
STOP = [f"+1415555{340 + i:04d}" for i in range(6)]
LEADS = CALLBACK + AT_NIGHT + REDIRECT + REDIRECT_INVALID + STOP


def redirected(number: str) -> str:
    """Where the sandbox person on ``number`` asks to be called instead (0320 -> 0420)."""
    return f"{number[:-4]}{int(number[-4:]) + 100:04d}"


pytestmark = pytest.mark.service_env(
    shown=SHOWN,
    # The person stays on the line until the agent has confirmed and hung up.
    CALLBRIDGE_SANDBOX_TALK_SECONDS="8",
)


def _instant(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _run(service: Service, database_url: str, *, agent_id: str, tools: bool) -> None:
    client = ElevenLabs(api_key=API_KEY, base_url=service.url).conversational_ai
    campaigns = client.outbound_campaigns
    collection = (
        # The report's items are not read: only the live tools act.
        DataCollectionConfig(callback_time=None, redirect_phone_number=None, stop=None)
        if tools
        else DataCollectionConfig(mappings={"frames_heard": "frames_heard_before"})
    )
    policy = PolicyConfigInput(
        timezone="America/Los_Angeles",
        calling_periods=[
            CallingPeriod(
                weekdays=[0, 1, 2, 3, 4, 5, 6],
                intervals=[CallingIntervalPolicy(start="08:00", end="20:00")],
            )
        ],
        retry=RetryPolicy(
            retry_delay_seconds=1, max_total_calls=3, max_callbacks=1, max_redirects=1
        ),
        data_collection=collection,
        followup_context=FollowupContextPolicy(
            call_type=True, previous_conversation_id=True, previous_summary=True
        ),
    )
    created = campaigns.create(
        call_name="follow-ups",
        agent_id=agent_id,
        recipients=[
            SubmitCampaignRecipient(id=f"r{i}", phone_number=phone) for i, phone in enumerate(LEADS)
        ],
        channel_config=PHONE,
        policy=policy,
        target_concurrency_limit=15,
    )
    campaign_id = created.campaign.campaign_id

    def settled() -> bool:
        # A report can come after its call's end completed the campaign (a stop then relabels
        # the lead, a callback reopens the campaign): every one of the 36 requests is in first.
        recorded = query_rows(
            database_url,
            "SELECT count(*) FROM follow_up_requests WHERE campaign_id = :c",
            c=campaign_id,
        )[0][0]
        return recorded == 36 and campaigns.get(campaign_id).status == "completed"

    wait_until(settled, timeout=50, interval=0.3, what="the follow-up campaign to complete")

    calls = [c for c in service.sandbox_calls() if c["from"] == PHONE["agent_phone_number_id"]]
    dials = Counter(c["to"] for c in calls)
    leads = {
        row[0]: row[1:]
        for row in query_rows(
            database_url,
            "SELECT phone_number, state, disposition, id FROM contacts WHERE campaign_id = :c",
            c=campaign_id,
        )
    }
    requests = query_rows(
        database_url,
        "SELECT c.phone_number, f.kind, f.decision, f.call_at, f.phone_number, f.source "
        "FROM follow_up_requests f JOIN contacts c ON c.id = f.contact_id "
        "WHERE f.campaign_id = :c",
        c=campaign_id,
    )
    # Every request came the way this run reads them.
    assert {r[5] for r in requests} == {"live_call" if tools else "report"}

    # A valid callback is dialled within 1 s of its time; the callback call asks again and
    # max_callbacks (1) refuses it: exactly two calls per lead.
    late: list[float] = []
    for phone in CALLBACK:
        asked = sorted((r for r in requests if r[0] == phone), key=lambda r: r[2])
        assert [r[2] for r in asked] == ["callback_ceiling_reached", "callback_queued"], phone
        due = _instant(asked[1][3])
        placed = sorted(_instant(c["created_at"]) for c in calls if c["to"] == phone)
        assert len(placed) == 2, (phone, placed)
        late.append((placed[1] - due).total_seconds())
        assert abs(late[-1]) < 1.0, (phone, placed, due)
        assert leads[phone][:2] == ("done", "callback_ceiling_reached")
    print(f"callbacks dialled {min(late):+.3f} s to {max(late):+.3f} s from their time")
    # A callback at 03:00 is outside the calling hours: the lead ends, never called again.
    for phone in AT_NIGHT:
        assert dials[phone] == 1
        assert leads[phone][:2] == ("done", "callback_time_invalid")
    # A redirect dials the new number (a person there answers and asks for nothing).
    for phone in REDIRECT:
        assert dials[phone] == 1 and dials[redirected(phone)] == 1
        assert [(r[1], r[2], r[4]) for r in requests if r[0] == phone] == [
            ("redirect", "redirect_queued", redirected(phone))
        ]
        assert leads[phone][:2] == ("done", "answered")
    for phone in REDIRECT_INVALID:
        assert dials[phone] == 1
        assert leads[phone][:2] == ("done", "redirect_number_invalid")
    # A stop is on the do-not-call list, and the number is never dialled again.
    listed = {row[0] for row in query_rows(database_url, "SELECT phone_number FROM dnc_entries")}
    for phone in STOP:
        assert phone in listed and dials[phone] == 1
        assert leads[phone][:2] == ("done", "dnc")
    # Caps: no lead had more calls than max_total_calls; nothing else was dialled.
    assert max(dials.values()) <= 2
    assert set(dials) == set(LEADS) | {redirected(p) for p in REDIRECT}

    follow_ups = campaigns.get_follow_up_requests(campaign_id)
    assert follow_ups.callbacks.requested == 18 and follow_ups.callbacks.distinct_leads == 12
    assert follow_ups.callbacks.requested_by_disposition == {
        "callback_queued": 6,
        "callback_ceiling_reached": 6,
        "callback_time_invalid": 6,
    }
    assert follow_ups.redirects.requested == 12
    assert follow_ups.redirects.requested_by_disposition == {
        "redirect_queued": 6,
        "redirect_number_invalid": 6,
    }
    # The dashboard's campaign page lists the newest of them (a panel of 20), each as decided.
    panel = service.api("GET", f"/api/v1/dashboard/campaigns/{campaign_id}").json()["follow_ups"]
    decided = dict(query_rows(database_url, "SELECT id, decision FROM follow_up_requests"))
    assert len(decided) == 36 and panel["more"] is True and len(panel["items"]) == 20
    assert all(item["decision"] == decided[item["id"]] for item in panel["items"])
    shown_at = [item["requested_at"] for item in panel["items"]]
    assert shown_at == sorted(shown_at, reverse=True)
    progress = campaigns.get_progress(campaign_id)
    assert progress.leads.finished_by_disposition == {
        "callback_ceiling_reached": 6,
        "callback_time_invalid": 6,
        "completed": 6,
        "redirect_number_invalid": 6,
        "do_not_call": 6,
    }
    lead = campaigns.leads.get(campaign_id, leads[CALLBACK[0]][2])
    assert lead.callback_count == 1 and lead.terminal_disposition == "callback_ceiling_reached"
    follow_calls = campaigns.calls.list(campaign_id, lead_id=leads[REDIRECT[0]][2]).calls
    assert sorted(c.intent_type for c in follow_calls) == ["initial", "redirect"]

    # Follow-up calls were told what kind of call they are and what was said before.
    conversations = service.http.get(
        f"{service.url}/sandbox/elevenlabs/conversations", timeout=30
    ).json()
    told = [
        c["dynamic_variables"]
        for c in conversations
        if c.get("dynamic_variables", {}).get("campaign__call_type") in ("callback", "redirect")
    ]
    assert Counter(v["campaign__call_type"] for v in told) == {"callback": 6, "redirect": 6}
    assert all(v["campaign__previous_summary"].startswith("Spoke with") for v in told)
    if tools:
        confirmed = [
            call
            for c in conversations
            for call in c.get("client_tool_calls", [])
            if call["tool_name"] == "callbridge_schedule_callback" and call.get("is_error") is False
        ]
        assert any(call["result"].startswith("Callback scheduled for") for call in confirmed)


def test_follow_ups_from_the_post_call_webhook(service: Service, database_url: str) -> None:
    _run(service, database_url, agent_id="agent_followups", tools=False)


def test_follow_ups_from_the_live_client_tools(service: Service, database_url: str) -> None:
    _run(service, database_url, agent_id="agent_followup_tools", tools=True)
