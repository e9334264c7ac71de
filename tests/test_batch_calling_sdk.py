"""The official elevenlabs SDK, pointed at callbridge, runs batch calls against the sandbox."""

from __future__ import annotations

from collections import Counter

import pytest
from elevenlabs import ElevenLabs
from elevenlabs.core.api_error import ApiError
from elevenlabs.types import ConversationInitiationClientDataRequestInput, OutboundCallRecipient

from tests.campaign_flow import numbers, predicted
from tests.service import API_KEY, Service, wait_until

ACTIVE = {"dispatched", "initiated", "in_progress"}


def _recipients(phones: list[str]) -> list[OutboundCallRecipient]:
    return [
        OutboundCallRecipient(
            id=f"r{i}",
            phone_number=phone,
            conversation_initiation_client_data=ConversationInitiationClientDataRequestInput(
                dynamic_variables={"first_name": f"Person {i}", "visit": i, "vip": i % 2 == 0}
            ),
        )
        for i, phone in enumerate(phones)
    ]


def _expected_status(phone: str) -> str:
    disposition, _ = predicted(phone)
    return {"answered": "completed", "voicemail": "voicemail"}.get(disposition, "failed")


def _dials(service: Service, phones: list[str]) -> Counter[str]:
    wanted = set(phones)
    return Counter(call["to"] for call in service.sandbox_calls() if call["to"] in wanted)


def test_batch_calling_through_the_official_sdk(service: Service) -> None:
    client = ElevenLabs(api_key=API_KEY, base_url=service.url)
    batches = client.conversational_ai.batch_calls

    # 1. A batch of 50 with dynamic variables runs to the sandbox table's outcomes.
    phones = numbers(100)[::2]  # every row of the sandbox's table
    batch = batches.create(
        call_name="reminders",
        agent_id="agent_e2e",
        recipients=_recipients(phones),
        target_concurrency_limit=25,
        # callbridge's own retry pacing (the SDK passes extra fields through unchanged).
        request_options={"additional_body_parameters": {"retry_delay_seconds": 1}},
    )
    assert batch.status in ("pending", "in_progress")
    assert batch.total_calls_scheduled == 50 and batch.target_concurrency_limit == 25
    done = wait_until(
        lambda: (b := batches.get(batch.id)).status == "completed" and b,
        timeout=180,
        interval=0.5,
        what="the batch to complete",
    )
    assert done.total_calls_finished == 50 and done.total_calls_dispatched == 50
    statuses = {r.phone_number: r.status for r in done.recipients}
    assert statuses == {phone: _expected_status(phone) for phone in phones}
    assert Counter(statuses.values()) == {"completed": 33, "voicemail": 7, "failed": 10}
    variables = {
        r.phone_number: r.conversation_initiation_client_data.dynamic_variables
        for r in done.recipients
    }
    assert variables[phones[3]] == {"first_name": "Person 3", "visit": 3, "vip": False}
    assert _dials(service, phones) == {p: predicted(p)[1] for p in phones}

    # 2. A second batch is cancelled while it runs: nobody else is dialled.
    second_phones = numbers(40, first_area=1)  # all answer on the first ring
    second = batches.create(
        call_name="cancel me",
        agent_id="agent_e2e",
        recipients=_recipients(second_phones),
        target_concurrency_limit=1,
    )
    wait_until(lambda: _dials(service, second_phones), timeout=60, what="the first dial")
    cancelled = batches.cancel(second.id)
    assert cancelled.status == "cancelled"
    settled = wait_until(
        lambda: (
            (b := batches.get(second.id))
            and not any(r.status in ACTIVE for r in b.recipients)
            and b
        ),
        timeout=60,
        what="live calls of the cancelled batch to end",
    )
    by_status = Counter(r.status for r in settled.recipients)
    assert by_status["cancelled"] >= 30 and by_status["pending"] == 0
    dialled = {r.phone_number for r in settled.recipients if r.status != "cancelled"}
    assert set(_dials(service, second_phones)) == dialled
    assert settled.status == "cancelled"

    # 3. A third batch (one attempt each) is retried: unanswered recipients are dialled again.
    third_phones = numbers(100, first_area=2)[70:95]  # no answer, busy, failed, busy-then-human
    third = batches.create(
        call_name="retry me",
        agent_id="agent_e2e",
        recipients=_recipients(third_phones),
        target_concurrency_limit=25,
        request_options={"additional_body_parameters": {"max_attempts": 1}},
    )
    first_run = wait_until(
        lambda: (b := batches.get(third.id)).status == "completed" and b,
        timeout=120,
        what="the third batch to complete",
    )
    assert {r.status for r in first_run.recipients} == {"failed"}
    retried = batches.retry(third.id)
    assert retried.retry_count == 1 and retried.status == "in_progress"
    second_run = wait_until(
        lambda: (b := batches.get(third.id)).status == "completed" and b,
        timeout=120,
        what="the retried batch to complete",
    )
    after = {r.phone_number: r.status for r in second_run.recipients}
    # 90-94 are busy once, then answered; the others fail again.
    assert after == {p: "completed" if int(p[-2:]) >= 90 else "failed" for p in third_phones}
    assert _dials(service, third_phones) == dict.fromkeys(third_phones, 2)

    # 4. The workspace list pages through all three, newest first.
    page = batches.list(limit=2)
    assert [b.id for b in page.batch_calls] == [third.id, second.id] and page.has_more
    rest = batches.list(limit=2, last_doc=page.next_doc)
    assert [b.id for b in rest.batch_calls] == [batch.id] and not rest.has_more
    assert {b.status for b in page.batch_calls + rest.batch_calls} == {"completed", "cancelled"}

    # 5. A finished batch can be deleted; then it is gone.
    batches.delete(third.id)
    with pytest.raises(ApiError) as gone:
        batches.get(third.id)
    assert gone.value.status_code == 404


def test_outbound_call_and_keys_through_the_sdk(service: Service) -> None:
    client = ElevenLabs(api_key=API_KEY, base_url=service.url)
    response = client.conversational_ai.twilio.outbound_call(
        agent_id="agent_e2e",
        agent_phone_number_id="+15005550006",
        to_number="+13055550142",
        conversation_initiation_client_data=ConversationInitiationClientDataRequestInput(
            dynamic_variables={"first_name": "Ada"}
        ),
    )
    assert response.success
    assert response.call_sid is not None and response.call_sid.startswith("CA")
    calls = [c for c in service.sandbox_calls() if c["sid"] == response.call_sid]
    assert calls and calls[0]["to"] == "+13055550142"

    # A wrong key is refused, as ElevenLabs refuses it.
    with pytest.raises(ApiError) as refused:
        ElevenLabs(api_key="wrong", base_url=service.url).conversational_ai.batch_calls.list()
    assert refused.value.status_code == 401
