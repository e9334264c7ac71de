"""POST /webhooks/elevenlabs: signatures, idempotency, and outcomes through the state machine."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from sqlalchemy import func, select, update

from bridge.app_keys import SESSIONMAKER
from bridge.sandbox.agent_brain import ConversationRecord, audio_webhook
from bridge.telephony.elevenlabs.post_call import apply_waiting_reports
from campaigns.models import (
    Attempt,
    AttemptStatus,
    CallEvent,
    Contact,
    ContactState,
    DncEntry,
    FollowUpRequest,
    FollowUpSettings,
)
from tests.agent_fixtures import answered_attempt

SECRET = "wsec_test_0123456789abcdef"


def signature(body: bytes, *, at: float | None = None, secret: str = SECRET) -> str:
    stamp = int(time.time() if at is None else at)
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v0={mac}"


def transcription(conversation_id: str, call_sid: str | None = None, voicemail: bool = False):
    transcript: list[dict[str, Any]] = [
        {"role": "agent", "message": "Hello Ada", "tool_calls": [], "time_in_call_secs": 0}
    ]
    if voicemail:
        transcript.append(
            {
                "role": "agent",
                "message": None,
                "tool_calls": [{"tool_name": "voicemail_detection", "params_as_json": "{}"}],
                "time_in_call_secs": 9,
            }
        )
    metadata: dict[str, Any] = {"call_duration_secs": 42, "termination_reason": "end_call"}
    if call_sid:
        metadata["phone_call"] = {"type": "twilio", "call_sid": call_sid}
    return {
        "type": "post_call_transcription",
        "event_timestamp": int(time.time()),
        "data": {
            "agent_id": "agent_test",
            "conversation_id": conversation_id,
            "status": "done",
            "transcript": transcript,
            "metadata": metadata,
            "analysis": {
                "call_successful": "success",
                "transcript_summary": "Ada confirmed her appointment.",
                "data_collection_results": {"confirmed": {"value": True}},
            },
        },
    }


@pytest.fixture
async def client(app_client: Any) -> Any:
    return await app_client(elevenlabs_webhook_secret=SECRET)


async def post(client: Any, envelope: Any, header: str | None = "sign") -> Any:
    body = json.dumps(envelope).encode()
    headers = {"Content-Type": "application/json"}
    if header == "sign":
        headers["ElevenLabs-Signature"] = signature(body)
    elif header is not None:
        headers["ElevenLabs-Signature"] = header
    return await client.post("/webhooks/elevenlabs", data=body, headers=headers)


async def stored_events(client: Any) -> list[CallEvent]:
    async with client.app[SESSIONMAKER]() as session:
        return list(await session.scalars(select(CallEvent).where(CallEvent.kind != "status")))


async def reload(client: Any, attempt: Attempt) -> tuple[Attempt, Contact]:
    async with client.app[SESSIONMAKER]() as session:
        fresh = await session.get(Attempt, attempt.id)
        contact = await session.get(Contact, attempt.contact_id)
    assert fresh is not None and contact is not None
    return fresh, contact


async def test_a_signed_report_is_applied_once_however_often_it_arrives(client: Any) -> None:
    attempt = await answered_attempt(client.app, conversation_id="conv_1")
    envelope = transcription("conv_1")
    first = await post(client, envelope)
    assert first.status == 200
    assert (await first.json())["result"] == "applied"
    again = await post(client, envelope)
    assert again.status == 200 and (await again.json())["result"] == "duplicate"
    fresh, _ = await reload(client, attempt)
    assert fresh.transcript_summary == "Ada confirmed her appointment."
    assert fresh.transcript == envelope["data"]["transcript"]
    assert fresh.call_successful == "success"
    assert fresh.data_collection == {"confirmed": {"value": True}}
    assert fresh.conversation_seconds == 42
    # A stream call ends with Twilio's own callback, not with the agent's report.
    assert fresh.status == AttemptStatus.IN_PROGRESS
    assert len(await stored_events(client)) == 1


@pytest.mark.parametrize(
    "header",
    [
        None,  # missing
        "t=123,v0=",  # garbled
        signature(b"something else"),  # for another body
        "forged-with-another-secret",
        "stale",
        "future",
    ],
    # Named, not shown: a signature holds the time it was made, and ids must not change per run.
    ids=["missing", "garbled", "another-body", "another-secret", "stale", "future"],
)
async def test_a_bad_signature_is_refused_and_nothing_is_stored(client: Any, header: Any) -> None:
    attempt = await answered_attempt(client.app, conversation_id="conv_2")
    envelope = transcription("conv_2")
    body = json.dumps(envelope).encode()
    if header == "forged-with-another-secret":
        header = signature(body, secret="not-the-secret")
    elif header == "stale":
        header = signature(body, at=time.time() - 31 * 60)
    elif header == "future":
        header = signature(body, at=time.time() + 6 * 60)
    response = await post(client, envelope, header)
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "bad_signature"
    assert await stored_events(client) == []
    fresh, _ = await reload(client, attempt)
    assert fresh.transcript_summary is None and fresh.transcript is None


async def test_slightly_old_and_slightly_early_signatures_are_accepted(client: Any) -> None:
    await answered_attempt(client.app, conversation_id="conv_3")
    for at, conversation in ((time.time() - 29 * 60, "conv_3"), (time.time() + 4 * 60, "x")):
        body = json.dumps(transcription(conversation)).encode()
        response = await client.post(
            "/webhooks/elevenlabs",
            data=body,
            headers={"ElevenLabs-Signature": signature(body, at=at)},
        )
        assert response.status == 200


async def test_a_report_for_an_unknown_conversation_is_kept_and_reported(client: Any) -> None:
    response = await post(client, transcription("conv_nobody", call_sid="CA" + "f" * 32))
    assert response.status == 200
    assert (await response.json())["result"] == "unknown"
    (event,) = await stored_events(client)
    assert event.applied is False and event.attempt_id is None
    assert event.payload["data"]["conversation_id"] == "conv_nobody"


async def test_native_busy_goes_through_the_retry_rules(client: Any) -> None:
    attempt = await answered_attempt(
        client.app, agent_connection="native", status=AttemptStatus.QUEUED, max_attempts=3
    )
    envelope = {
        "type": "call_initiation_failure",
        "event_timestamp": int(time.time()),
        "data": {
            "agent_id": "agent_test",
            "conversation_id": "conv_busy",
            "failure_reason": "busy",
            "metadata": {
                "type": "twilio",
                "body": {"CallSid": attempt.provider_call_id, "CallStatus": "busy"},
            },
        },
    }
    response = await post(client, envelope)
    assert (await response.json())["result"] == "applied"
    fresh, contact = await reload(client, attempt)
    assert (fresh.status, fresh.outcome, fresh.conversation_id) == ("busy", "busy", "conv_busy")
    # Attempt 1 of 3 was busy: the contact waits for its retry.
    assert contact.state == ContactState.PENDING and contact.next_attempt_at is not None


async def test_a_native_voicemail_conversation_ends_as_voicemail(client: Any) -> None:
    attempt = await answered_attempt(
        client.app, agent_connection="native", status=AttemptStatus.QUEUED
    )
    envelope = transcription("conv_vm", call_sid=attempt.provider_call_id, voicemail=True)
    response = await post(client, envelope)
    assert (await response.json())["result"] == "applied"
    fresh, contact = await reload(client, attempt)
    assert (fresh.status, fresh.outcome) == ("completed", "voicemail")
    assert fresh.conversation_id == "conv_vm" and fresh.talk_seconds == 42
    assert (contact.state, contact.disposition) == (ContactState.DONE, "voicemail")
    async with client.app[SESSIONMAKER]() as session:
        assert await session.scalar(select(func.count()).select_from(CallEvent)) == 1


async def test_a_report_before_the_creates_answer_does_not_name_the_call(client: Any) -> None:
    # The create's answer is late (a slow provider): the attempt has no call id yet, and the
    # agent's report names none either. Its conversation id must not become the call id, or
    # the call's own callbacks would be refused as another call's and the attempt lost.
    attempt = await answered_attempt(client.app, conversation_id="conv_early")
    async with client.app[SESSIONMAKER].begin() as session:
        early = await session.get(Attempt, attempt.id)
        assert early is not None
        early.provider_call_id = None
        early.status = AttemptStatus.DIALING
    response = await post(client, transcription("conv_early"))
    assert (await response.json())["result"] == "applied"
    fresh, _ = await reload(client, attempt)
    assert fresh.provider_call_id is None
    assert fresh.transcript_summary == "Ada confirmed her appointment."


async def test_a_post_call_audio_is_acknowledged_once_signed_and_nothing_is_stored(
    client: Any,
) -> None:
    record = ConversationRecord(conversation_id="conv_audio", agent_id="agent_test", mode="native")
    envelope = audio_webhook(record)
    assert (await post(client, envelope, header=None)).status == 401
    response = await post(client, envelope)
    assert response.status == 200
    assert await response.json() == {"result": "ignored", "type": "post_call_audio"}
    assert await stored_events(client) == []


async def test_a_report_before_its_conversation_is_known_is_applied_once_it_is(
    client: Any,
) -> None:
    """A short call's report can beat the relay's record of its conversation id: it is kept,
    then applied (follow-ups included) when the id is stored."""
    sm = client.app[SESSIONMAKER]
    attempt = await answered_attempt(client.app, phone="+12125550141")
    async with sm.begin() as session:
        session.add(FollowUpSettings(campaign_id=attempt.campaign_id, stop_item="stop"))
    envelope = transcription("conv_early")
    envelope["data"]["analysis"]["data_collection_results"]["stop"] = {
        "data_collection_id": "stop",
        "value": True,
        "rationale": "asked",
    }
    early = await post(client, envelope)
    assert (await early.json())["result"] == "unknown"
    fresh, _ = await reload(client, attempt)
    assert fresh.transcript_summary is None
    async with sm.begin() as session:
        await session.execute(
            update(Attempt).where(Attempt.id == attempt.id).values(conversation_id="conv_early")
        )
    assert await apply_waiting_reports(sm, attempt.id, "conv_early") == 1
    # Once only: a second look finds nothing waiting.
    assert await apply_waiting_reports(sm, attempt.id, "conv_early") == 0
    fresh, contact = await reload(client, attempt)
    assert fresh.transcript_summary == "Ada confirmed her appointment."
    async with sm() as session:
        listed = await session.scalar(
            select(func.count()).where(DncEntry.phone_number == "+12125550141")
        )
        decisions = list(
            await session.scalars(
                select(FollowUpRequest.decision).where(FollowUpRequest.attempt_id == attempt.id)
            )
        )
    assert listed == 1 and decisions == ["do_not_call"]
    # The call is still live: it ends the contact do_not_call when it ends.
    assert contact.state == ContactState.IN_PROGRESS
