"""Batch calling behaves as ElevenLabs' own, checked with the official elevenlabs SDK: one call
per recipient, retry of failed recipients only, the submitted ids, only batches listed, overrides
and user ids reaching the agent, outbound-call's telephony settings, ElevenLabs' error shape, and
register-call's TwiML connecting a call placed elsewhere to the agent."""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ElementTree
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
from elevenlabs import ElevenLabs
from elevenlabs.core.api_error import ApiError
from elevenlabs.errors import UnprocessableEntityError
from elevenlabs.types import ConversationInitiationClientDataRequestInput, OutboundCallRecipient

from bridge.settings import SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN, SANDBOX_FROM_NUMBER
from tests.campaign_flow import create_campaign, numbers
from tests.service import API_KEY, Service, wait_until

FINISHED = {"completed", "failed", "voicemail", "cancelled"}


def _client(service: Service) -> ElevenLabs:
    return ElevenLabs(api_key=API_KEY, base_url=service.url)


def _one_call_status(phone: str) -> str:
    """What ElevenLabs reports after one call, by the sandbox table (sandbox/number_table.py):
    00-59 a person, 60-69 a voicemail box; no answer, busy and failed calls are all failed."""
    suffix = int(phone[-2:])
    if suffix < 60:
        return "completed"
    return "voicemail" if suffix < 70 else "failed"


def _dials(service: Service, phones: list[str]) -> Counter[str]:
    wanted = set(phones)
    return Counter(call["to"] for call in service.sandbox_calls() if call["to"] in wanted)


def _finished(client: ElevenLabs, batch_id: str, timeout: float) -> Any:
    return wait_until(
        lambda: (
            (b := client.conversational_ai.batch_calls.get(batch_id)).status
            in ("completed", "cancelled")
            and all(r.status in FINISHED for r in b.recipients)
            and b
        ),
        timeout=timeout,
        interval=0.2,
        what=f"batch {batch_id} to finish",
    )


def _agent_log(service: Service) -> list[dict[str, Any]]:
    response = requests.get(f"{service.url}/sandbox/elevenlabs/conversations", timeout=30)
    response.raise_for_status()
    return list(response.json())


def test_a_batch_without_extensions_calls_each_recipient_once(service: Service) -> None:
    client = _client(service)
    # 40 rows of the sandbox table: people, voicemail boxes, no answer, busy, failed, and the
    # numbers that are busy (or unanswered) first and would be answered on a retry.
    phones = numbers(100)[::5] + numbers(100, first_area=1)[2::5]
    assert len(phones) == 40
    # Not batches: a campaign of the REST API and a single call.
    create_campaign(service, name="not a batch")
    client.conversational_ai.twilio.outbound_call(
        agent_id="agent_e2e",
        agent_phone_number_id="+15005550006",
        to_number=numbers(100, first_area=8)[1],
    )
    batch = client.conversational_ai.batch_calls.create(
        call_name="once each",
        agent_id="agent_e2e",
        recipients=[
            OutboundCallRecipient(id=f"crm-{i}", phone_number=p) for i, p in enumerate(phones)
        ],
        target_concurrency_limit=20,
    )
    # Well within a minute at the sandbox's timings (each call takes under a second).
    done = _finished(client, batch.id, timeout=60)
    assert done.status == "completed" and done.total_calls_finished == 40
    statuses = {r.phone_number: r.status for r in done.recipients}
    assert statuses == {p: _one_call_status(p) for p in phones}
    assert Counter(statuses.values()) == {"completed": 24, "voicemail": 4, "failed": 12}
    # One call each: busy and unanswered recipients are not called again.
    assert _dials(service, phones) == dict.fromkeys(phones, 1)

    # The ids are the submitted ones; the phone number is named even though none was given.
    assert {r.id for r in done.recipients} == {f"crm-{i}" for i in range(40)}
    assert not any(r.id.startswith("ct_") for r in done.recipients)
    assert done.phone_number_id == SANDBOX_FROM_NUMBER

    # Only the batch is listed: not the REST campaign, not the agent's single calls.
    listed = client.conversational_ai.batch_calls.list()
    assert [b.id for b in listed.batch_calls] == [batch.id]
    assert all(b.phone_number_id for b in listed.batch_calls)
    rest = service.api("GET", "/api/v1/campaigns?per_page=100").json()
    others = [c["id"] for c in rest if c["id"] != batch.id]
    assert len(others) == 2
    for other in others:
        with pytest.raises(ApiError) as not_a_batch:
            client.conversational_ai.batch_calls.get(other)
        assert not_a_batch.value.status_code == 404

    # A recipient without an id gets one of its own, not callbridge's contact id.
    unnamed = client.conversational_ai.batch_calls.create(
        call_name="no ids",
        agent_id="agent_e2e",
        recipients=[OutboundCallRecipient(phone_number=numbers(100, first_area=2)[0])],
    )
    recipient = client.conversational_ai.batch_calls.get(unnamed.id).recipients[0]
    assert recipient.id and not recipient.id.startswith("ct_")


def test_retry_calls_failed_recipients_again_but_never_cancelled_ones(service: Service) -> None:
    client = _client(service)
    batches = client.conversational_ai.batch_calls
    phones = numbers(100, first_area=4)[70:90]  # no answer, busy, failed: all fail once
    batch = batches.create(
        call_name="cancel then retry",
        agent_id="agent_e2e",
        recipients=[OutboundCallRecipient(phone_number=p) for p in phones],
        target_concurrency_limit=1,
        # One call each whatever the default: this test is about what a retry calls again.
        request_options={"additional_body_parameters": {"max_attempts": 1}},
    )
    # One at a time: once the first has failed, most of the others are not called yet.
    wait_until(
        lambda: any(r.status == "failed" for r in batches.get(batch.id).recipients),
        timeout=30,
        what="a first recipient to fail",
    )
    batches.cancel(batch.id)
    first = _finished(client, batch.id, timeout=60)
    before = {r.phone_number: r.status for r in first.recipients}
    cancelled = {p for p, s in before.items() if s == "cancelled"}
    failed = {p for p, s in before.items() if s == "failed"}
    assert cancelled and failed
    dials_before = _dials(service, phones)

    retried = batches.retry(batch.id)
    assert retried.retry_count == 1
    second = _finished(client, batch.id, timeout=60)
    after = {r.phone_number: r.status for r in second.recipients}
    dials_after = _dials(service, phones)
    assert {p: after[p] for p in cancelled} == dict.fromkeys(cancelled, "cancelled")
    assert {p: dials_after[p] for p in cancelled} == {p: dials_before[p] for p in cancelled}
    assert {p: dials_after[p] for p in failed} == {p: dials_before[p] + 1 for p in failed}


def test_overrides_and_user_id_reach_the_agent_when_it_allows_overrides(service: Service) -> None:
    client = _client(service)
    override = {"agent": {"first_message": "Hello {{first_name}}", "language": "fr"}}
    phones = numbers(100, first_area=5)[:2]
    batch = client.conversational_ai.batch_calls.create(
        call_name="overrides",
        agent_id="agent_e2e",
        recipients=[
            OutboundCallRecipient(
                id=f"r{i}",
                phone_number=phone,
                conversation_initiation_client_data=ConversationInitiationClientDataRequestInput(
                    conversation_config_override=override,
                    user_id=f"user-{i}",
                    dynamic_variables={"first_name": f"P{i}"},
                ),
            )
            for i, phone in enumerate(phones)
        ],
    )
    done = _finished(client, batch.id, timeout=60)
    assert {r.status for r in done.recipients} == {"completed"}
    by_user = {c["user_id"]: c for c in _agent_log(service) if c["agent_id"] == "agent_e2e"}
    assert set(by_user) == {"user-0", "user-1"}
    for i in range(2):
        conversation = by_user[f"user-{i}"]
        assert conversation["conversation_config_override"] == override
        assert conversation["dynamic_variables"] == {"first_name": f"P{i}"}
        assert conversation["to_number"] is None or conversation["to_number"] == phones[i]

    # An agent whose settings allow no overrides refuses the conversation, as ElevenLabs does.
    refused = client.conversational_ai.twilio.outbound_call(
        agent_id="agent_no_overrides",
        agent_phone_number_id="+15005550006",
        to_number=numbers(100, first_area=5)[5],
        conversation_initiation_client_data=ConversationInitiationClientDataRequestInput(
            conversation_config_override=override, user_id="user-x"
        ),
    )
    assert refused.success
    record = wait_until(
        lambda: next(
            (c for c in _agent_log(service) if c["agent_id"] == "agent_no_overrides"), None
        ),
        timeout=30,
        what="the refused conversation in the agent's log",
    )
    assert record["status"] == "failed" and "not allowed" in record["failure_reason"]
    assert record["user_id"] == "user-x"


def test_null_dynamic_variables_are_accepted(service: Service) -> None:
    client = _client(service)
    phone = numbers(100, first_area=5)[10]
    variables = {"first_name": "Ada", "nickname": None}
    batch = client.conversational_ai.batch_calls.create(
        call_name="nulls",
        agent_id="agent_e2e",
        recipients=[
            OutboundCallRecipient(
                id="n1",
                phone_number=phone,
                conversation_initiation_client_data=ConversationInitiationClientDataRequestInput(
                    dynamic_variables=variables
                ),
            )
        ],
    )
    done = _finished(client, batch.id, timeout=60)
    [recipient] = done.recipients
    assert recipient.status == "completed"
    assert recipient.conversation_initiation_client_data.dynamic_variables == variables
    assert [c["dynamic_variables"] for c in _agent_log(service)] == [variables]
    answer = client.conversational_ai.twilio.outbound_call(
        agent_id="agent_e2e",
        agent_phone_number_id="+15005550006",
        to_number=numbers(100, first_area=5)[11],
        conversation_initiation_client_data=ConversationInitiationClientDataRequestInput(
            dynamic_variables={"balance": None}
        ),
    )
    assert answer.success


def test_outbound_call_honours_its_telephony_config_and_recording(service: Service) -> None:
    client = _client(service)
    to = numbers(100, first_area=6)[3]
    answer = client.conversational_ai.twilio.outbound_call(
        agent_id="agent_e2e",
        agent_phone_number_id="+15005550006",
        to_number=to,
        call_recording_enabled=True,
        telephony_call_config={"ringing_timeout_secs": 17},
    )
    assert answer.success and answer.call_sid
    call = next(c for c in service.sandbox_calls() if c["sid"] == answer.call_sid)
    # As asked: 17 s of ringing, recorded, and no machine detection (none was asked for).
    assert (call["timeout"], call["record"], call["machine_detection"]) == (17, True, None)

    other = numbers(100, first_area=6)[4]
    answer = client.conversational_ai.twilio.outbound_call(
        agent_id="agent_e2e",
        agent_phone_number_id="+15005550006",
        to_number=other,
        telephony_call_config={
            "twilio_call_recording_enabled": True,
            "twilio_machine_detection": {"mode": "enable"},
        },
    )
    call = next(c for c in service.sandbox_calls() if c["sid"] == answer.call_sid)
    assert (call["record"], call["machine_detection"]) == (True, "Enable")


def test_convai_errors_are_in_elevenlabs_shape_and_rest_errors_are_not(service: Service) -> None:
    client = _client(service)
    with pytest.raises(ApiError) as missing:
        client.conversational_ai.batch_calls.get("cmp_nope")
    assert missing.value.status_code == 404
    assert missing.value.body["detail"]["status"] == "not_found"
    assert "cmp_nope" in missing.value.body["detail"]["message"]

    with pytest.raises(ApiError) as invalid:
        client.conversational_ai.batch_calls.create(
            call_name="bad",
            agent_id="agent_e2e",
            recipients=[
                OutboundCallRecipient(phone_number="+14155550100"),
                OutboundCallRecipient(phone_number="not a number"),
            ],
        )
    assert invalid.value.status_code == 422
    [item] = invalid.value.body["detail"]
    assert item["loc"] == ["body", "recipients", 1, "phone_number"]
    assert item["type"] == "invalid_recipients" and item["msg"]

    with pytest.raises(ApiError) as schema:
        client.conversational_ai.batch_calls.create(
            call_name="bad", agent_id="agent_e2e", recipients=[]
        )
    assert schema.value.status_code == 422
    assert schema.value.body["detail"][0]["loc"][:2] == ["body", "recipients"]

    with pytest.raises(ApiError) as unauthorized:
        ElevenLabs(api_key="wrong", base_url=service.url).conversational_ai.batch_calls.list()
    assert unauthorized.value.status_code == 401
    assert unauthorized.value.body["detail"]["status"] == "unauthorized"

    # callbridge's own API keeps its own shape.
    rest = service.api("GET", "/api/v1/campaigns/cmp_nope")
    assert rest.status_code == 404 and rest.json()["error"]["code"] == "not_found"


def test_convai_refuses_a_malformed_request_as_elevenlabs_does_with_a_422(
    service: Service,
) -> None:
    """ElevenLabs' OpenAPI declares 422 (and no 400) for a request it cannot accept: the SDK
    raises its typed UnprocessableEntityError, with the parameter at fault in ``loc``."""
    client = _client(service)
    batches = client.conversational_ai.batch_calls
    with pytest.raises(UnprocessableEntityError) as cursor:
        batches.list(last_doc="cmp_nope")
    [item] = cursor.value.body["detail"]
    assert item["loc"] == ["query", "last_doc"] and "no batch" in item["msg"]
    with pytest.raises(UnprocessableEntityError) as limit:
        batches.list(limit=0)
    assert limit.value.body["detail"][0]["loc"] == ["query", "limit"]

    xi = {"xi-api-key": API_KEY, "Content-Type": "application/json"}
    typed = requests.get(
        f"{service.url}/v1/convai/batch-calling/workspace?limit=many", headers=xi, timeout=10
    )
    assert typed.status_code == 422
    assert typed.json()["detail"][0]["loc"] == ["query", "limit"]
    for path in ("/v1/convai/batch-calling/submit", "/v1/convai/twilio/outbound-call"):
        for body in (b"", b"{"):
            broken = requests.post(f"{service.url}{path}", data=body, headers=xi, timeout=10)
            assert broken.status_code == 422, (path, body, broken.text)
            [item] = broken.json()["detail"]
            assert item["loc"] == ["body"] and item["type"] == "bad_json", item
    assert batches.list().batch_calls == []  # nothing was made by the refused requests

    # callbridge's own API keeps its 400 for the same mistakes.
    rest = service.api("GET", "/api/v1/campaigns?per_page=many")
    assert rest.status_code == 400 and rest.json()["error"]["code"] == "bad_query"


class _TwimlApp(BaseHTTPRequestHandler):
    """The caller's own application: Twilio asks it what to do with the answered call, and it
    answers with callbridge's register-call TwiML (as ElevenLabs' documentation shows)."""

    service: Service
    variables: dict[str, Any]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(parse_qsl(self.rfile.read(length).decode()))
        twiml = _client(self.service).conversational_ai.twilio.register_call(
            agent_id="agent_e2e",
            from_number=form["From"],
            to_number=form["To"],
            direction="outbound",
            conversation_initiation_client_data=ConversationInitiationClientDataRequestInput(
                dynamic_variables=self.variables, user_id="registered-user"
            ),
        )
        body = twiml.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_register_call_answers_twiml_that_connects_the_call_to_the_agent(
    service: Service,
) -> None:
    client = _client(service)
    twiml = client.conversational_ai.twilio.register_call(
        agent_id="agent_e2e", from_number="+15005550006", to_number="+14155550142"
    )
    root = ElementTree.fromstring(twiml)
    [connect] = list(root)
    [stream] = list(connect)
    assert (connect.tag, stream.tag) == ("Connect", "Stream")
    assert stream.get("url", "").startswith(f"ws://127.0.0.1:{service.port}/media/twilio/att_")
    names = {p.get("name") for p in stream}
    assert names == {"attempt_id", "token"}

    # A call placed on the (sandbox) Twilio account by someone else's application, whose
    # answer URL hands back register-call's TwiML: the call's audio reaches the agent.
    handler = type("Handler", (_TwimlApp,), {"service": service, "variables": {"name": "Reg"}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        to = numbers(100, first_area=7)[7]
        created = requests.post(
            f"{service.url}/sandbox/2010-04-01/Accounts/{SANDBOX_ACCOUNT_SID}/Calls.json",
            data={
                "To": to,
                "From": "+15005550006",
                "Url": f"http://127.0.0.1:{server.server_address[1]}/answered",
            },
            auth=(SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN),
            timeout=30,
        )
        assert created.status_code == 201, created.text
        sid = created.json()["sid"]
        conversation = wait_until(
            lambda: next(
                (
                    c
                    for c in _agent_log(service)
                    if c["user_id"] == "registered-user" and c["user_frames"] > 0
                ),
                None,
            ),
            timeout=30,
            what="the registered call's conversation to carry the callee's audio",
        )
    finally:
        server.shutdown()
        thread.join(timeout=10)
    assert conversation["dynamic_variables"] == {"name": "Reg"}
    assert conversation["agent_frames"] > 0
    # The call is on record: the attempt took the call's sid and its conversation's id.
    attempt = wait_until(
        lambda: next(
            (
                a
                for a in service.api("GET", "/api/v1/attempts", params={"per_page": 1000}).json()
                if a["provider_call_id"] == sid and a["conversation_id"]
            ),
            None,
        ),
        timeout=30,
        what="the registered call's attempt",
    )
    assert attempt["conversation_id"] == conversation["conversation_id"]
    assert attempt["phone_number"] == to and attempt["campaign_id"].startswith("cmp_reg_")
