"""The official elevenlabs SDK's outbound campaigns, pointed at `callbridge serve` and its sandbox:
every operation's effect is checked in the sandbox's call log or in the database."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from elevenlabs import ElevenLabs
from elevenlabs.core.api_error import ApiError
from elevenlabs.types import (
    AgentPolicyOverrideInput,
    CallingIntervalPolicy,
    CallingPeriod,
    CampaignConfigInput,
    ConversationInitiationClientDataRequestInput,
    PolicyConfigInput,
    RetryPolicy,
    SubmitCampaignRecipient,
)

from campaigns.attention import pause_for
from campaigns.db import make_engine, make_sessionmaker
from tests.campaign_flow import numbers
from tests.databases import query_rows
from tests.service import API_KEY, Service, wait_until

PHONE = {"channel": "phone", "agent_phone_number_id": "+15005550006"}


def _client(service: Service) -> Any:
    return ElevenLabs(api_key=API_KEY, base_url=service.url).conversational_ai.outbound_campaigns


def _dials(service: Service, phones: list[str]) -> Counter[str]:
    wanted = set(phones)
    return Counter(call["to"] for call in service.sandbox_calls() if call["to"] in wanted)


def _recipient(i: int, *phones: str) -> SubmitCampaignRecipient:
    return SubmitCampaignRecipient(
        id=f"r{i}",
        phone_number=phones[0],
        phone_numbers=list(phones[1:]) or None,
        conversation_initiation_client_data=ConversationInitiationClientDataRequestInput(
            dynamic_variables={"first_name": f"Person {i}"}
        ),
    )


def _finished(client: Any, campaign_id: str, timeout: float = 90) -> Any:
    return wait_until(
        lambda: (c := client.get(campaign_id)).status == "completed" and c,
        timeout=timeout,
        interval=0.3,
        what=f"campaign {campaign_id} to complete",
    )


def test_a_policy_runs_as_written_and_every_read_shows_it(
    service: Service, database_url: str
) -> None:
    client = _client(service)
    phones = numbers(100, first_area=3)
    answers, busy = phones[0], phones[80]
    busy_then_answers = [phones[81], phones[1]]  # a busy first number, an answering second
    policy = PolicyConfigInput(
        timezone="America/New_York",
        retry=RetryPolicy(
            retry_delay_seconds=1, max_total_calls=5, max_consecutive_failures_per_number=2
        ),
    )
    created = client.create(
        call_name="policy",
        agent_id="agent_e2e",
        recipients=[_recipient(0, answers), _recipient(1, busy), _recipient(2, *busy_then_answers)],
        channel_config=PHONE,
        policy=policy,
        idempotency_key="create-once",
    )
    assert created.created is True and created.within_calling_window is True
    campaign_id = created.campaign.campaign_id
    # A repeat with the same key returns the same campaign and creates nothing.
    again = client.create(
        call_name="policy",
        agent_id="agent_e2e",
        recipients=[_recipient(0, answers), _recipient(1, busy), _recipient(2, *busy_then_answers)],
        channel_config=PHONE,
        policy=policy,
        idempotency_key="create-once",
    )
    assert again.created is False and again.campaign.campaign_id == campaign_id
    assert query_rows(database_url, "SELECT count(*) FROM outbound_campaigns")[0][0] == 1
    row = query_rows(
        database_url,
        "SELECT max_attempts, retry_delay_seconds, max_failures_per_number, "
        "end_after_number_failures, timezone FROM campaigns WHERE id = :id",
        id=campaign_id,
    )[0]
    assert tuple(row) == (5, 1, 2, True, "America/New_York")

    done = _finished(client, campaign_id)
    assert done.counts.leads == 3 and done.counts.terminal_leads == 3
    assert done.policy.retry.max_total_calls == 5
    assert done.policy.timezone == "America/New_York"
    # max_consecutive_failures_per_number 2: the busy lead ends after 2 calls (not 5), the other
    # moves to its second number after 2 and is answered there.
    assert _dials(service, [answers, busy, *busy_then_answers]) == {
        answers: 1,
        busy: 2,
        busy_then_answers[0]: 2,
        busy_then_answers[1]: 1,
    }

    leads = {lead.recipient_id: lead for lead in client.leads.list(campaign_id).leads}
    assert leads["r0"].terminal_disposition == "completed"
    assert leads["r1"].terminal_disposition == "attempt_ceiling_reached"
    assert leads["r1"].attempt_count == 2 and leads["r1"].failure_count == 2
    moved = client.leads.get(campaign_id, leads["r2"].lead_id)
    assert moved.phone_numbers == busy_then_answers and moved.phone_numbers_index == 1
    assert moved.phone_number == busy_then_answers[1]
    assert moved.terminal_disposition == "completed"
    assert moved.dynamic_variables == {"first_name": "Person 2"}
    finished = client.leads.list(campaign_id, status="finished", search=busy)
    assert [lead.recipient_id for lead in finished.leads] == ["r1"]

    calls = client.calls.list(campaign_id, page_size=100).calls
    assert len(calls) == 6
    assert Counter(c.call_result for c in calls) == {"answered": 2, "busy": 4}
    r2_calls = sorted(
        (c for c in calls if c.lead_id == moved.lead_id), key=lambda c: c.cold_attempt
    )
    assert [c.phone_number for c in r2_calls] == [busy_then_answers[0]] * 2 + [busy_then_answers[1]]
    assert [c.decision_disposition for c in r2_calls] == ["retry_queued"] * 2 + ["completed"]
    assert [c.intent_type for c in r2_calls] == ["initial", "retry", "retry"]
    attempts = query_rows(
        database_url, "SELECT count(*) FROM attempts WHERE campaign_id = :id", id=campaign_id
    )
    assert attempts[0][0] == 6
    page = client.calls.list(campaign_id, page_size=4)
    rest = client.calls.list(campaign_id, page_size=4, cursor=page.next_cursor)
    assert page.has_more and not rest.has_more
    assert {c.intent_id for c in page.calls + rest.calls} == {c.intent_id for c in calls}

    exported = b"".join(client.calls.export(campaign_id)).decode()
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert sorted(r["intent_id"] for r in rows) == sorted(c.intent_id for c in calls)
    assert {r["recipient_id"] for r in rows} == {"r0", "r1", "r2"}
    assert (
        len(
            list(
                csv.DictReader(
                    io.StringIO(b"".join(client.calls.export(campaign_id, limit=2)).decode())
                )
            )
        )
        == 2
    )

    progress = client.get_progress(campaign_id)
    assert progress.leads.total == 3 and progress.leads.finished == 3
    assert progress.leads.finished_by_disposition == {
        "completed": 2,
        "attempt_ceiling_reached": 1,
    }
    assert progress.next_call_time_unix is None
    follow_ups = client.get_follow_up_requests(campaign_id)
    assert follow_ups.callbacks.requested == 0 and follow_ups.redirects.requested == 0

    listed = client.list()
    assert [c.campaign_id for c in listed.campaigns] == [campaign_id]
    assert client.list(status="active").campaigns == []
    assert [c.campaign_id for c in client.list(status="completed").campaigns] == [campaign_id]
    both = client.list(status=["paused", "completed"]).campaigns
    assert [c.campaign_id for c in both] == [campaign_id]
    ended = client.leads.list(campaign_id, disposition=["attempt_ceiling_reached", "removed"]).leads
    assert [lead.recipient_id for lead in ended] == ["r1"]
    busy_calls = client.calls.list(campaign_id, call_result=["busy", "failed"]).calls
    assert len(busy_calls) == 4 and {c.call_result for c in busy_calls} == {"busy"}


def test_a_rotation_with_no_step_is_refused_whole(service: Service, database_url: str) -> None:
    client = _client(service)
    phone = numbers(1, first_area=4)[0]
    # Rotation with no step to rotate by has no meaning: refused, naming the missing field.
    with pytest.raises(ApiError) as caught:
        client.create(
            call_name="refused",
            agent_id="agent_e2e",
            recipients=[_recipient(0, phone)],
            channel_config=PHONE,
            policy=PolicyConfigInput(retry=RetryPolicy(interval_placement="rotate")),
        )
    assert caught.value.status_code == 422
    assert caught.value.body["detail"][0]["loc"] == [
        "body",
        "policy",
        "retry",
        "rotate_step_seconds",
    ]
    # Nothing was written, nothing dialled.
    assert query_rows(database_url, "SELECT count(*) FROM campaigns")[0][0] == 0
    assert _dials(service, [phone]) == {}


def test_workspace_config_is_versioned_and_taken_by_campaigns_without_a_policy(
    service: Service, database_url: str
) -> None:
    client = _client(service)
    phone = numbers(100, first_area=4)[80]  # always busy
    with pytest.raises(ApiError) as caught:
        client.config.get()
    assert caught.value.status_code == 404 and "detail" in caught.value.body
    with pytest.raises(ApiError) as caught:
        # No policy and no workspace configuration: nothing to run with.
        client.create(
            call_name="x",
            agent_id="agent_e2e",
            recipients=[_recipient(0, phone)],
            channel_config=PHONE,
        )
    assert caught.value.status_code == 422

    first = client.config.update(
        config=CampaignConfigInput(
            policy=PolicyConfigInput(retry=RetryPolicy(retry_delay_seconds=1, max_total_calls=4)),
            agent_policies={
                "agent_two": AgentPolicyOverrideInput(
                    retry=RetryPolicy(retry_delay_seconds=1, max_total_calls=2)
                )
            },
        )
    )
    assert first.version == 1
    second = client.config.update(
        expected_version=1,
        config=CampaignConfigInput(
            policy=PolicyConfigInput(retry=RetryPolicy(retry_delay_seconds=1, max_total_calls=3)),
            agent_policies={
                "agent_two": AgentPolicyOverrideInput(
                    retry=RetryPolicy(retry_delay_seconds=1, max_total_calls=2)
                )
            },
        ),
    )
    assert second.version == 2
    with pytest.raises(ApiError) as caught:
        client.config.update(expected_version=1, config=CampaignConfigInput())
    assert caught.value.status_code == 409
    with pytest.raises(ApiError) as caught:
        client.config.update(
            expected_version=2,
            config=CampaignConfigInput(
                policy=PolicyConfigInput(retry=RetryPolicy(interval_placement="rotate"))
            ),
        )
    # Refused whole: a rotation needs its step.
    assert caught.value.status_code == 422
    stored = query_rows(database_url, "SELECT version, config FROM outbound_config")
    assert len(stored) == 1 and stored[0][0] == 2
    read = client.config.get()
    assert read.version == 2 and read.config.policy.retry.max_total_calls == 3

    workspace = client.create(
        call_name="workspace",
        agent_id="agent_e2e",
        recipients=[_recipient(0, phone)],
        channel_config=PHONE,
    ).campaign
    agent = client.create(
        call_name="agent",
        agent_id="agent_two",
        recipients=[_recipient(0, numbers(100, first_area=5)[80])],
        channel_config=PHONE,
    ).campaign
    assert workspace.policy.retry.max_total_calls == 3
    assert agent.policy.retry.max_total_calls == 2
    _finished(client, workspace.campaign_id)
    _finished(client, agent.campaign_id)
    assert _dials(service, [phone]) == {phone: 3}
    assert _dials(service, [numbers(100, first_area=5)[80]]) == {numbers(100, first_area=5)[80]: 2}


def _window_elsewhere(zone: str) -> tuple[str, str, datetime]:
    """A one-hour daily interval that is closed now in ``zone``, and when it next opens."""
    now = datetime.now(ZoneInfo(zone))
    hour = 13 if now.hour < 12 else 1
    opens = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    if opens <= now:
        opens += timedelta(days=1)
    return f"{hour:02d}:00", f"{hour + 1:02d}:00", opens


def test_calling_periods_are_read_in_the_recipients_zone(
    service: Service, database_url: str
) -> None:
    client = _client(service)
    new_york = "+12125550100"  # America/New_York
    start, end, opens = _window_elsewhere("America/New_York")
    created = client.create(
        call_name="windows",
        agent_id="agent_e2e",
        recipients=[_recipient(0, new_york)],
        channel_config=PHONE,
        policy=PolicyConfigInput(
            # The campaign zone is only for numbers without one: Tokyo must not matter here.
            timezone="Asia/Tokyo",
            calling_periods=[
                CallingPeriod(
                    weekdays=[0, 1, 2, 3, 4, 5, 6],
                    intervals=[CallingIntervalPolicy(start=start, end=end)],
                )
            ],
            retry=RetryPolicy(retry_delay_seconds=1, max_total_calls=1),
        ),
    )
    assert created.within_calling_window is False
    progress = wait_until(
        lambda: (
            (p := client.get_progress(created.campaign.campaign_id)).next_call_time_unix
            == int(opens.timestamp())
            and p
        ),
        timeout=30,
        what="the lead to be planned at the window's opening in New York",
    )
    assert progress.leads.uncalled == 1
    due = query_rows(
        database_url,
        "SELECT next_attempt_at, attempts_made FROM contacts WHERE campaign_id = :id",
        id=created.campaign.campaign_id,
    )
    assert due[0][1] == 0
    with pytest.raises(ApiError) as caught:
        client.create(
            call_name="overlap",
            agent_id="agent_e2e",
            recipients=[_recipient(0, new_york)],
            channel_config=PHONE,
            policy=PolicyConfigInput(
                calling_periods=[
                    CallingPeriod(
                        weekdays=[0],
                        intervals=[
                            CallingIntervalPolicy(start="09:00", end="12:00"),
                            CallingIntervalPolicy(start="11:00", end="13:00"),
                        ],
                    )
                ]
            ),
        )
    assert caught.value.status_code == 422
    assert _dials(service, [new_york]) == {}


def test_pause_resume_stop_leads_and_attention(service: Service, database_url: str) -> None:
    client = _client(service)
    policy = PolicyConfigInput(retry=RetryPolicy(retry_delay_seconds=1, max_total_calls=1))
    phones = numbers(60, first_area=6)  # all answered on the first ring
    first = client.create(
        call_name="one",
        agent_id="agent_e2e",
        recipients=[_recipient(i, p) for i, p in enumerate(phones[:30])],
        channel_config=PHONE,
        policy=policy,
        target_concurrency_limit=1,
    ).campaign.campaign_id

    def status_in_db(campaign_id: str) -> str:
        return query_rows(
            database_url, "SELECT status FROM campaigns WHERE id = :id", id=campaign_id
        )[0][0]

    wait_until(lambda: _dials(service, phones[:30]), timeout=30, what="a first dial")
    paused = client.pause(first)
    assert paused.status == "paused" and status_in_db(first) == "paused"
    # Once the call under way ends, nobody else of the paused campaign is dialled.
    wait_until(
        lambda: client.get_progress(first).conversations.in_progress == 0,
        timeout=30,
        what="the live call to end",
    )
    dialled = set(_dials(service, phones[:30]))
    waiting = [
        lead
        for lead in client.leads.list(first, page_size=100).leads
        if lead.phone_number not in dialled
    ]
    removed = waiting[0]
    suppressed = client.leads.delete(first, removed.lead_id)
    assert suppressed.lead_id == removed.lead_id and suppressed.has_calls_in_flight is False
    assert query_rows(
        database_url, "SELECT state, disposition FROM contacts WHERE id = :id", id=removed.lead_id
    ) == [("done", "removed")]
    assert client.leads.get(first, removed.lead_id).terminal_disposition == "removed"
    assert set(_dials(service, phones[:30])) == dialled

    resumed = client.resume(first)
    assert resumed.status == "active" and status_in_db(first) == "running"
    wait_until(
        lambda: len(_dials(service, phones[:30])) > len(dialled) + 1,
        timeout=30,
        what="dials after resume",
    )
    stopped = client.stop(first)
    assert stopped.status in ("stopping", "stopped") and status_in_db(first) == "cancelled"
    wait_until(lambda: client.get(first).status == "stopped", timeout=30, what="stopped")
    cancelled = query_rows(
        database_url,
        "SELECT count(*) FROM contacts WHERE campaign_id = :id AND disposition = 'cancelled'",
        id=first,
    )[0][0]
    assert cancelled > 0
    after_stop = _dials(service, phones[:30])
    assert sum(after_stop.values()) == 30 - cancelled - 1  # the removed lead is never dialled
    assert removed.phone_number not in after_stop

    # pause-all and stop-all act on every outbound campaign, and on nothing else.
    second = client.create(
        call_name="two",
        agent_id="agent_e2e",
        recipients=[_recipient(i, p) for i, p in enumerate(phones[30:45])],
        channel_config=PHONE,
        policy=policy,
        target_concurrency_limit=1,
    ).campaign.campaign_id
    third = client.create(
        call_name="three",
        agent_id="agent_e2e",
        recipients=[_recipient(i, p) for i, p in enumerate(phones[45:60])],
        channel_config=PHONE,
        policy=policy,
        target_concurrency_limit=1,
    ).campaign.campaign_id
    first_page = client.list(page_size=2)
    second_page = client.list(page_size=2, cursor=first_page.next_cursor)
    assert [c.campaign_id for c in first_page.campaigns] == [third, second]
    assert [c.campaign_id for c in second_page.campaigns] == [first]
    assert first_page.has_more and not second_page.has_more
    everything = client.pause_all()
    assert set(everything.paused_campaign_ids) == {second, third}
    assert status_in_db(second) == status_in_db(third) == "paused"

    # An attention item (raised by the domain, as the circuit breaker raises it) on a third
    # campaign: listed, shown in the campaign's status, and retried (the campaign resumes).
    async def raise_item(campaign_id: str) -> str:
        engine = make_engine(database_url)
        try:
            item = await pause_for(
                make_sessionmaker(engine),
                campaign_id,
                kind="agent_unavailable",
                code="E1",
                message="The agent cannot be reached.",
                remedy="Check the agent.",
                details={},
            )
            assert item is not None
            return item.id
        finally:
            await engine.dispose()

    item_id = asyncio.run(raise_item(second))
    items = client.attention.list(campaign_id=second).attention
    assert [i.attention_id for i in items] == [item_id]
    assert items[0].status == "open" and items[0].reason == "agent_unavailable"
    assert client.get(second).status == "attention"
    retried = client.attention.retry(item_id)
    assert retried.status == "resolved"
    assert status_in_db(second) == "running"
    assert query_rows(
        database_url,
        "SELECT resolved_at IS NOT NULL FROM attention_items WHERE id = :id",
        id=item_id,
    ) == [(True,)]
    other = asyncio.run(raise_item(third))
    resolved = client.attention.resolve(other, resolution="agent fixed by hand")
    assert resolved.status == "resolved" and resolved.resolution == "agent fixed by hand"
    assert client.attention.list().attention == []
    assert {i.attention_id for i in client.attention.list(include_resolved=True).attention} == {
        item_id,
        other,
    }
    # Resolving keeps the campaign paused (only a retry places its calls).
    assert status_in_db(third) == "paused"

    halted = client.stop_all()
    assert set(halted.stopped_campaign_ids + halted.stopping_campaign_ids) == {second, third}
    assert status_in_db(second) == status_in_db(third) == "cancelled"
    with pytest.raises(ApiError) as caught:
        client.resume(first)
    assert caught.value.status_code == 409 and "detail" in caught.value.body
    with pytest.raises(ApiError) as caught:
        client.get("cmp_nope")
    assert caught.value.status_code == 404 and "detail" in caught.value.body


def test_outbound_campaigns_and_batches_are_listed_apart(service: Service) -> None:
    el = ElevenLabs(api_key=API_KEY, base_url=service.url).conversational_ai
    phone = numbers(1, first_area=7)[0]
    outbound = el.outbound_campaigns.create(
        call_name="outbound",
        agent_id="agent_e2e",
        recipients=[_recipient(0, phone)],
        channel_config=PHONE,
        variant="simple",
    ).campaign
    assert outbound.variant == "simple" and outbound.policy.retry.max_total_calls == 1
    batch = el.batch_calls.create(
        call_name="batch",
        agent_id="agent_e2e",
        recipients=[{"phone_number": numbers(2, first_area=7)[1]}],
    )
    assert [c.campaign_id for c in el.outbound_campaigns.list().campaigns] == [outbound.campaign_id]
    assert [b.id for b in el.batch_calls.list().batch_calls] == [batch.id]
    with pytest.raises(ApiError) as caught:
        el.outbound_campaigns.get(batch.id)
    assert caught.value.status_code == 404
    with pytest.raises(ApiError) as caught:
        el.batch_calls.get(outbound.campaign_id)
    assert caught.value.status_code == 404


def test_a_scheduled_campaign_waits_for_its_time(service: Service, database_url: str) -> None:
    client = _client(service)
    phone = numbers(3, first_area=8)[2]
    later = int(time.time()) + 3600
    created = client.create(
        call_name="later",
        agent_id="agent_e2e",
        recipients=[_recipient(0, phone)],
        channel_config=PHONE,
        scheduled_time_unix=later,
        policy=PolicyConfigInput(retry=RetryPolicy(retry_delay_seconds=0, max_total_calls=2)),
    )
    assert created.within_calling_window is False
    assert created.campaign.scheduled_time_unix == later
    assert created.campaign.status == "active"
    assert created.campaign.policy.retry.retry_delay_seconds == 0
    row = query_rows(
        database_url,
        "SELECT status, start_at, retry_delay_seconds FROM campaigns WHERE id = :id",
        id=created.campaign.campaign_id,
    )[0]
    assert row[0] == "scheduled" and row[1] is not None and row[2] == 0
    assert _dials(service, [phone]) == {}


def test_concurrent_creates_with_one_key_make_one_campaign(
    service: Service, database_url: str
) -> None:
    client = _client(service)
    phones = numbers(100, first_area=9)[60:65]  # voicemail: one call each

    def create(_: int) -> Any:
        return client.create(
            call_name="once",
            agent_id="agent_e2e",
            recipients=[_recipient(i, p) for i, p in enumerate(phones)],
            channel_config=PHONE,
            policy=PolicyConfigInput(retry=RetryPolicy(retry_delay_seconds=1, max_total_calls=1)),
            idempotency_key="same-key",
        )

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(create, range(6)))
    assert len({a.campaign.campaign_id for a in answers}) == 1
    assert sum(a.created for a in answers) == 1
    assert query_rows(database_url, "SELECT count(*) FROM campaigns")[0][0] == 1
    assert query_rows(database_url, "SELECT count(*) FROM contacts")[0][0] == len(phones)
    _finished(client, answers[0].campaign.campaign_id)
    assert _dials(service, phones) == dict.fromkeys(phones, 1)
    with pytest.raises(ApiError) as caught:
        client.create(
            call_name="another request",
            agent_id="agent_e2e",
            recipients=[_recipient(0, phones[0])],
            channel_config=PHONE,
            policy=PolicyConfigInput(retry=RetryPolicy(max_total_calls=1)),
            idempotency_key="same-key",
        )
    assert caught.value.status_code == 409 and "detail" in caught.value.body


def test_a_lead_who_calls_back_shows_the_call_back_among_the_calls(service: Service) -> None:
    """The sandbox's 555-0260 reaches voicemail, then calls the campaign's number back: the call
    back is one of the campaign's calls, inbound (a field beyond ElevenLabs' own)."""
    client = _client(service)
    created = client.create(
        call_name="call back",
        agent_id="agent_sandbox",
        recipients=[_recipient(0, "+12125550260")],
        channel_config={
            **PHONE,
            "mode_config": {"twilio_machine_detection": {"mode": "detect_message_end"}},
        },
        variant="simple",
    )
    campaign_id = created.campaign.campaign_id

    def both_calls() -> Any:
        calls = client.calls.list(campaign_id).calls
        return len(calls) == 2 and all(call.status == "completed" for call in calls) and calls

    calls = wait_until(both_calls, timeout=60, interval=0.5, what="the call and the call back")
    by_direction = {call.direction: call for call in calls}
    assert set(by_direction) == {"outbound", "inbound"}
    assert by_direction["outbound"].call_result == "voicemail"
    assert by_direction["inbound"].lead_id == by_direction["outbound"].lead_id
    assert by_direction["inbound"].conversation_id
