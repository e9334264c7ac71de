"""People who call back: the whole story, played by the sandbox carrier and agent.

`callbridge serve` runs with its sandbox. Contacts whose numbers end in 0260-0269 reach
voicemail on the first attempt and call the campaign's number back 5 s later (the sandbox's
call-back rule); `POST /sandbox/inbound` has anyone else call. What the agent was given is read
from the sandbox agent's log, what was stored from the API, the dashboard and the database.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect
from sqlalchemy import text
from twilio.request_validator import RequestValidator

from bridge.sandbox.credentials import SANDBOX_AUTH_TOKEN
from bridge.settings import DEFAULT_INBOUND_MESSAGE
from campaigns.db import make_engine
from tests.campaign_flow import campaign, start, upload, wait_completed
from tests.service import Service, wait_until
from tests.specs import openapi
from tests.test_dashboard_browser import browser, log_in, page, screenshot
from tests.test_webhook_outbox import Receiver

# The dashboard's Chromium fixtures, run against this module's service.
__all__ = ["browser", "page"]

FROM_NUMBER = "+15005550006"
# 555-0260..0269: voicemail first, then the person calls back (bridge/sandbox/number_table.py).
CALLERS = {
    f"+1212555026{i}": {"first_name": name, "balance": f"{10 + i}.00"}
    for i, name in enumerate(
        ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "John", "Radia", "Ken"]
    )
}
CALL_BACK_VARIABLES = {
    "campaign__call_type",
    "campaign__previous_conversation_id",
    "campaign__previous_summary",
}


def contacts_csv(contacts: dict[str, dict[str, str]]) -> bytes:
    rows = ["phone_number,first_name,balance"]
    rows += [f"{phone},{v['first_name']},{v['balance']}" for phone, v in contacts.items()]
    return ("\n".join(rows) + "\n").encode()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(0)
    yield r
    r.close()


pytestmark = pytest.mark.service_env(
    # Long enough that the agent, not the caller, ends each conversation.
    CALLBRIDGE_SANDBOX_TALK_SECONDS="8",
    CALLBRIDGE_WEBHOOK_POLL_SECONDS="0.2",
    # The webhook receiver listens on the loopback.
    CALLBRIDGE_WEBHOOK_ALLOW_PRIVATE_TARGETS="true",
)


def get_json(service: Service, path: str, **params: str) -> Any:
    response = requests.get(f"{service.url}{path}", params=params, timeout=30)
    response.raise_for_status()
    return response.json()


def rows(database_url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    """Rows read straight from the service's database."""

    async def read() -> list[dict[str, Any]]:
        engine = make_engine(database_url)
        try:
            async with engine.connect() as conn:
                result = await conn.execute(text(sql), params)
                return [dict(row._mapping) for row in result]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def create(service: Service, **overrides: Any) -> str:
    body = {
        "name": "call backs",
        "agent_id": "agent_sandbox",
        "agent_connection": "stream",
        "from_number": FROM_NUMBER,
        "max_attempts": 3,
        # A voicemail is tried again, due well within the test: only the call back can finish
        # the contact before it.
        "retry_rules": {"voicemail": {"retry": True, "delays": [40]}},
        "concurrency": 10,
        # Twilio's answering-machine detection tells voicemail before the call ends, so the
        # voicemail is retried (the agent's own detection may come after the call's end).
        "machine_detection": "DetectMessageEnd",
        **overrides,
    }
    response = service.api("POST", "/api/v1/campaigns", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def call_in(service: Service, caller: str, called: str = FROM_NUMBER) -> str:
    """Have ``caller`` call ``called`` through the sandbox; the call's sid."""
    response = requests.post(
        f"{service.url}/sandbox/inbound", data={"From": caller, "To": called}, timeout=30
    )
    assert response.status_code == 201, response.text
    assert response.json()["direction"] == "inbound"
    return str(response.json()["sid"])


def sandbox_call(service: Service, sid: str) -> dict[str, Any]:
    return next(c for c in service.sandbox_calls() if c["sid"] == sid)


def wait_ended(service: Service, sid: str) -> dict[str, Any]:
    return wait_until(
        lambda: (call := sandbox_call(service, sid))["end_time"] and call,
        timeout=60,
        interval=0.2,
        what=f"sandbox call {sid} to end",
    )


def conversations(service: Service) -> dict[str, dict[str, Any]]:
    return {c["conversation_id"]: c for c in get_json(service, "/sandbox/elevenlabs/conversations")}


def test_ten_contacts_reach_voicemail_call_back_and_reach_the_agent_with_their_context(
    service: Service, receiver: Receiver, database_url: str
) -> None:
    hook = service.api(
        "POST",
        "/api/v1/webhooks",
        json={"url": f"http://127.0.0.1:{receiver.port}/hook", "events": ["call.completed"]},
    )
    assert hook.status_code == 201, hook.text
    campaign_id = create(service)
    upload(service, campaign_id, contacts_csv(CALLERS))
    start(service, campaign_id)

    # Every contact called back and its call back ended it: the campaign is over long before
    # any retry (40 s after each voicemail) would have been due.
    state = wait_completed(service, campaign_id, timeout=90)
    assert state["counts"]["dispositions"]["answered"] == len(CALLERS)
    # Each post-call report arrives after the call's end.
    wait_until(
        lambda: all(
            a["transcript_summary"]
            for a in service.api("GET", f"/api/v1/campaigns/{campaign_id}/calls").json()
        ),
        timeout=30,
        interval=0.2,
        what="every call's post-call report",
    )
    calls = service.api("GET", f"/api/v1/campaigns/{campaign_id}/calls").json()
    by_phone: dict[str, list[dict[str, Any]]] = {}
    for call in sorted(calls, key=lambda c: c["created_at"]):
        by_phone.setdefault(call["phone_number"], []).append(call)
    assert set(by_phone) == set(CALLERS)
    agent_log = conversations(service)
    for phone, (dialled, called_back) in ((p, tuple(c)) for p, c in by_phone.items()):
        assert dialled["direction"] == "outbound" and dialled["outcome"] == "voicemail"
        assert called_back["direction"] == "inbound", called_back
        assert called_back["status"] == "completed" and called_back["outcome"] == "answered"
        assert called_back["talk_seconds"] and called_back["call_successful"] == "success"
        # The agent had the contact's variables and the voicemail conversation before it.
        record = agent_log[called_back["conversation_id"]]
        assert record["dynamic_variables"] == {
            **CALLERS[phone],
            "campaign__call_type": "inbound_callback",
            "campaign__previous_conversation_id": dialled["conversation_id"],
            "campaign__previous_summary": dialled["transcript_summary"],
        }
        assert dialled["conversation_id"] and dialled["transcript_summary"]
        # The outbound conversation had none of that.
        assert not CALL_BACK_VARIABLES & set(
            agent_log[dialled["conversation_id"]]["dynamic_variables"]
        )

    # Nobody was dialled again: one outbound call per contact, one call back to our number.
    sandbox = service.sandbox_calls()
    outbound = [c for c in sandbox if c["direction"] == "outbound-api"]
    inbound = [c for c in sandbox if c["direction"] == "inbound"]
    assert sorted(c["to"] for c in outbound) == sorted(CALLERS)
    assert sorted(c["from"] for c in inbound) == sorted(CALLERS)
    assert {c["to"] for c in inbound} == {FROM_NUMBER}

    # The export, the dashboard's contact dialog and the outgoing webhooks show the call back.
    export = service.api("GET", f"/api/v1/campaigns/{campaign_id}/export.csv")
    for row in csv.DictReader(io.StringIO(export.text)):
        assert (row["disposition"], row["attempts"]) == ("answered", "1")
        assert (row["last_direction"], row["calls_back"]) == ("inbound", "1")
    contacts = service.api(
        "GET", f"/api/v1/dashboard/campaigns/{campaign_id}/contacts", params={"per_page": "50"}
    ).json()["contacts"]
    for contact in contacts:
        detail = service.api("GET", f"/api/v1/dashboard/contacts/{contact['id']}").json()
        assert [c["direction"] for c in detail["calls"]] == ["outbound", "inbound"]
        assert detail["calls"][1]["transcript_summary"]
    completed = wait_until(
        lambda: (
            (
                found := [
                    payload["data"]
                    for payload in (json.loads(body) for _, body in receiver.accepted())
                    if payload["type"] == "call.completed"
                ]
            )
            and len(found) == 2 * len(CALLERS)
            and found
        ),
        timeout=30,
        interval=0.2,
        what="every call.completed webhook",
    )
    assert sorted(e["direction"] for e in completed) == ["inbound"] * 10 + ["outbound"] * 10

    # The carrier asked for each call back's TwiML and reported its end as Twilio does: signed,
    # and in the shape of Twilio's published voice webhooks.
    validator = RequestValidator(SANDBOX_AUTH_TOKEN)
    sent = [
        entry
        for entry in get_json(service, "/sandbox/sent")
        if entry["source"] == "twilio" and entry["params"].get("Direction") == "inbound"
    ]
    schemas = {
        "twiml": "twilio-voice-webhooks.json#VoiceRequest",
        "status": "twilio-voice-webhooks.json#StatusCallback",
    }
    assert sorted(e["kind"] for e in sent) == ["status"] * 10 + ["twiml"] * 10
    for entry in sent:
        assert openapi.errors(schemas[entry["kind"]], entry["params"]) == []
        assert validator.validate(entry["url"], entry["params"], entry["signature"])
        assert entry["response_status"] in (200, 204)
    voice_urls = {e["url"] for e in sent if e["kind"] == "twiml"}
    assert voice_urls == {f"{service.url}/webhooks/twilio/inbound"}
    # Each call back's audio went both ways over its Media Stream.
    for phone, (_, called_back) in by_phone.items():
        media = get_json(service, f"/sandbox/calls/{called_back['provider_call_id']}/media")
        assert media["frames_received"] > 0 and media["frames_sent"] > 0, phone

    # In the database: one inbound attempt per contact, each with its raw call event.
    stored = rows(
        database_url,
        "SELECT a.id, e.kind FROM attempts a JOIN call_events e ON e.attempt_id = a.id "
        "WHERE a.direction = 'inbound' AND e.kind = 'inbound'",
    )
    assert len(stored) == len(CALLERS)


# The agent's side of each mode: a call back reaches a native campaign's agent through
# register-call, as ElevenLabs connects calls on a Twilio number of one's own.
AGENT_MODE = {"stream": "websocket", "register": "register", "native": "register"}


@pytest.mark.parametrize("mode", ["stream", "register", "native"])
def test_a_caller_on_the_do_not_call_list_is_answered_and_never_called(
    service: Service, database_url: str, mode: str
) -> None:
    phone = "+12125550142"
    campaign_id = create(service, agent_connection=mode, agent_phone_number_id="phnum_sandbox")
    upload(service, campaign_id, contacts_csv({phone: {"first_name": "Dana", "balance": "5"}}))
    added = service.api("POST", "/api/v1/dnc", json={"phone_number": phone, "reason": "asked"})
    assert added.status_code in (200, 201), added.text

    sid = call_in(service, phone)
    ended = wait_ended(service, sid)
    assert ended["status"] == "completed" and ended["duration"] >= 1

    # Answered: the agent had the contact's variables.
    attempt = wait_until(
        lambda: (
            (found := service.api("GET", f"/api/v1/campaigns/{campaign_id}/calls").json())
            and found[0]["status"] == "completed"
            and found[0]["conversation_id"]
            and found[0]
        ),
        timeout=30,
        interval=0.2,
        what="the call back's attempt",
    )
    assert attempt["direction"] == "inbound" and attempt["provider_call_id"] == sid
    record = conversations(service)[attempt["conversation_id"]]
    assert record["mode"] == AGENT_MODE[mode]
    if mode != "stream":
        # register-call was told who called which number.
        assert (record["from_number"], record["to_number"]) == (phone, FROM_NUMBER)
    assert record["dynamic_variables"] == {
        "first_name": "Dana",
        "balance": "5",
        "campaign__call_type": "inbound_callback",
        "campaign__previous_conversation_id": "",
        "campaign__previous_summary": "",
    }
    # Never called: the contact is finished as do-not-call, the campaign starts and ends with
    # no dial.
    contact = service.api("GET", f"/api/v1/dashboard/campaigns/{campaign_id}/contacts").json()[
        "contacts"
    ][0]
    assert (contact["state"], contact["disposition"], contact["attempts"]) == ("done", "dnc", 0)
    started = service.api("POST", f"/api/v1/campaigns/{campaign_id}/start")
    assert started.status_code == 200, started.text
    # With its one contact finished, the campaign completes as it starts.
    wait_completed(service, campaign_id, timeout=30)
    assert [c for c in service.sandbox_calls() if c["direction"] == "outbound-api"] == []
    assert campaign(service, campaign_id)["counts"]["dispositions"].get("dnc") == 1


def test_an_unknown_caller_hears_the_message_and_leaves_only_the_call_event(
    service: Service, database_url: str
) -> None:
    campaign_id = create(service)
    upload(
        service, campaign_id, contacts_csv({"+12125550143": {"first_name": "Eve", "balance": "1"}})
    )
    stranger = "+13125550144"
    sid = call_in(service, stranger)
    ended = wait_ended(service, sid)
    assert ended["said"] == [DEFAULT_INBOUND_MESSAGE]
    assert ended["status"] == "completed"
    # Nobody was connected to an agent, and nothing but the raw call event names the stranger.
    assert get_json(service, "/sandbox/elevenlabs/conversations") == []
    assert rows(database_url, "SELECT id FROM attempts") == []
    events = rows(
        database_url,
        "SELECT kind, attempt_id, applied FROM call_events WHERE provider_call_id = :sid",
        sid=sid,
    )
    assert {"kind": "inbound", "attempt_id": None, "applied": False} in events
    assert all(e["attempt_id"] is None for e in events)
    # The sandbox refuses a call it could not place, in Twilio's error shape.
    for form, status, code in (
        ({"From": "12345", "To": FROM_NUMBER}, 400, 21212),
        ({"From": stranger, "To": "+15005550009"}, 404, 20404),  # not the account's number
    ):
        refused = requests.post(f"{service.url}/sandbox/inbound", data=form, timeout=30)
        assert (refused.status_code, refused.json()["code"]) == (status, code), refused.text
    # The number's voice request was signed and answered with the message, then a hang-up.
    voice = [
        entry
        for entry in get_json(service, "/sandbox/sent")
        if entry["kind"] == "twiml" and entry["params"]["CallSid"] == sid
    ]
    assert len(voice) == 1 and voice[0]["response_status"] == 200
    assert "<Say>" in voice[0]["response_body"] and "<Hangup" in voice[0]["response_body"]


def test_an_unknown_caller_reaches_the_default_inbound_agent(
    database_url: str, tmp_path: Path
) -> None:
    svc = Service(
        database_url,
        tmp_path,
        CALLBRIDGE_SANDBOX_TALK_SECONDS="8",
        CALLBRIDGE_INBOUND_AGENT_ID="agent_front_desk",
    ).start()
    try:
        sid = call_in(svc, "+13125550145")
        wait_ended(svc, sid)
        records = get_json(svc, "/sandbox/elevenlabs/conversations")
        assert len(records) == 1
        assert records[0]["agent_id"] == "agent_front_desk"
        assert records[0]["dynamic_variables"] == {"campaign__call_type": "inbound_unknown"}
        assert sandbox_call(svc, sid)["said"] == []
        assert rows(database_url, "SELECT id FROM attempts") == []
        assert rows(database_url, "SELECT id FROM contacts") == []
    finally:
        svc.stop()


def test_a_forged_inbound_webhook_is_refused_and_stores_nothing(
    service: Service, database_url: str
) -> None:
    phone = "+12125550146"
    campaign_id = create(service)
    upload(service, campaign_id, contacts_csv({phone: {"first_name": "Mallory", "balance": "0"}}))
    url = f"{service.url}/webhooks/twilio/inbound"
    form = {
        "CallSid": "CA" + "f" * 32,
        "AccountSid": "AC" + "0" * 32,
        "From": phone,
        "To": FROM_NUMBER,
        "CallStatus": "ringing",
        "Direction": "inbound",
    }
    forged = RequestValidator("not-the-auth-token").compute_signature(url, form)
    unsigned = requests.post(url, data=form, timeout=10)
    wrong = requests.post(url, data=form, headers={"X-Twilio-Signature": forged}, timeout=10)
    for response in (unsigned, wrong):
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "bad_signature"
    assert rows(database_url, "SELECT id FROM attempts") == []
    assert rows(database_url, "SELECT id FROM call_events") == []
    contact = service.api("GET", f"/api/v1/dashboard/campaigns/{campaign_id}/contacts").json()[
        "contacts"
    ][0]
    assert contact["state"] == "pending"
    # The same request signed with the service's auth token is answered: the signature was
    # the only thing wrong.
    good = RequestValidator(SANDBOX_AUTH_TOKEN).compute_signature(url, form)
    answered = requests.post(url, data=form, headers={"X-Twilio-Signature": good}, timeout=10)
    assert answered.status_code == 200 and "<Connect>" in answered.text


def test_the_contact_dialog_shows_the_call_and_the_call_back(service: Service, page: Page) -> None:
    phone = "+12125550260"  # voicemail, then calls back 5 s later
    campaign_id = create(service)
    upload(service, campaign_id, contacts_csv({phone: CALLERS[phone]}))
    start(service, campaign_id)
    wait_completed(service, campaign_id, timeout=60)
    wait_until(
        lambda: (
            (calls := service.api("GET", f"/api/v1/campaigns/{campaign_id}/calls").json())
            and len(calls) == 2
            and all(a["transcript_summary"] for a in calls)
        ),
        timeout=30,
        interval=0.2,
        what="both calls' post-call reports",
    )

    log_in(page, service)
    page.goto(f"{service.url}/#/campaigns/{campaign_id}")
    page.get_by_role("button", name=f"Attempts of {phone}").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    calls = dialog.locator("#attempt-list > li")
    expect(calls).to_have_count(2)
    expect(calls.nth(0)).to_have_attribute("data-direction", "outbound")
    expect(calls.nth(0).locator(".badge")).to_have_text("Voicemail")
    expect(calls.nth(1)).to_have_attribute("data-direction", "inbound")
    expect(calls.nth(1).locator(".attempt-head strong")).to_have_text("Called back (call 2)")
    expect(calls.nth(1).locator(".badge")).to_have_text("Answered")
    expect(calls.nth(1)).to_contain_text("Inbound (called back)")
    # The agent's summary of the call back, which knew the voicemail before it.
    expect(calls.nth(1).locator(".summary")).to_be_visible()
    expect(dialog.locator("dl.facts").first).to_contain_text("DispositionAnswered")
    screenshot(page, "contact-called-back.png")
