"""A campaign placed through ElevenLabs' SIP-trunk outbound call, against the sandbox.

`callbridge serve` (or, where a webhook must be lost, the app in this process) runs with its
sandbox agent, which serves ElevenLabs' SIP-trunk outbound-call endpoint: it places each call
over the "trunk" (ending on the sandbox carrier, which plays the number's outcome from the
sandbox table), talks to whoever answers, and reports back only through signed post-call
webhooks with SIP-shaped metadata. No carrier callback reaches
callbridge for these calls, so every disposition here comes from those webhooks.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from elevenlabs.client import ElevenLabs

from bridge.app_keys import SANDBOX_AGENT
from bridge.fault_plan import Faults
from bridge.sandbox.agent import SandboxAgent
from bridge.settings import SANDBOX_ELEVENLABS_API_KEY
from tests.campaign_flow import export_rows, predicted, start, upload, wait_completed
from tests.conftest import eventually
from tests.service import API_KEY, Service, free_port, wait_until
from tests.test_vendor_specs import check

HEADERS = {"Authorization": f"Bearer {API_KEY}"}
# One number per row of the sandbox's outcome table: a person, a voicemail box, no answer,
# busy, a failed call, busy then a person, no answer twice then a voicemail box.
PHONES = [f"+1212555{100 + suffix:04d}" for suffix in (0, 60, 70, 80, 85, 90, 95)]
CAMPAIGN = {
    "name": "over the trunk",
    "agent_id": "agent_sandbox",
    "agent_connection": "sip_trunk",
    "agent_phone_number_id": "phnum_trunk",
    "max_attempts": 3,
    "retry_delay_seconds": 1,
    "concurrency": 10,
    # No carrier's answering-machine detection over a SIP trunk: the agent finds voicemail.
    "machine_detection": "",
}


pytestmark = pytest.mark.service_env(
    # Long enough for the agent, not the callee, to end each answered call: a voicemail box
    # hung up before the agent heard its beep would be a person to it.
    CALLBRIDGE_SANDBOX_TALK_SECONDS="8",
)


def get_json(service: Service, path: str) -> Any:
    response = requests.get(f"{service.url}{path}", timeout=30)
    response.raise_for_status()
    return response.json()


def contacts_csv() -> bytes:
    rows = ["phone_number,id,first_name"]
    rows += [f"{p},ext-{i},Person {i}" for i, p in enumerate(PHONES)]
    return ("\n".join(rows) + "\n").encode()


def webhooks(service: Service) -> list[dict[str, Any]]:
    return list(get_json(service, "/sandbox/elevenlabs/sent"))


def all_reported(service: Service) -> bool:
    """Every conversation over, and reported: two webhooks when it was held, one when not."""
    for record in get_json(service, "/sandbox/elevenlabs/conversations"):
        if record["status"] not in ("done", "failed"):
            return False
        if len(record["webhooks"]) < (2 if record["status"] == "done" else 1):
            return False
    return True


def test_a_sip_trunk_campaign_ends_each_contact_as_the_sandbox_table_predicts(
    service: Service,
) -> None:
    response = service.api("POST", "/api/v1/campaigns", json=CAMPAIGN)
    assert response.status_code == 201, response.text
    campaign_id = response.json()["id"]
    upload(service, campaign_id, contacts_csv())
    start(service, campaign_id)
    wait_completed(service, campaign_id, timeout=90)
    wait_until(lambda: all_reported(service), timeout=30, interval=0.2, what="every webhook")

    rows = {row["phone_number"]: row for row in export_rows(service, campaign_id)}
    outcomes = {p: (rows[p]["disposition"], int(rows[p]["attempts"])) for p in PHONES}
    assert outcomes == {p: predicted(p) for p in PHONES}

    # Every call went over the trunk, once per attempt, and no other way.
    conversations = get_json(service, "/sandbox/elevenlabs/conversations")
    assert {c["mode"] for c in conversations} == {"sip_trunk"}
    assert Counter(c["to_number"] for c in conversations) == {
        p: attempts for p, (_, attempts) in outcomes.items()
    }
    assert all(c["phone_number_id"] == "phnum_trunk" for c in conversations)
    # Each attempt is named by its conversation and learnt its outcome from the webhooks.
    attempts = service.api("GET", f"/api/v1/campaigns/{campaign_id}/calls").json()
    by_conversation = {c["conversation_id"]: c for c in conversations}
    assert len(attempts) == len(conversations)
    for attempt in attempts:
        assert attempt["provider_call_id"] == attempt["conversation_id"]
        assert by_conversation[attempt["conversation_id"]]["to_number"] == attempt["phone_number"]
        # ElevenLabs placed it, as the connection's package says (not the carrier).
        assert attempt["provider"] == "elevenlabs"

    # What the agent sent validates against ElevenLabs' published post-call webhook schemas,
    # signed as the official SDK verifies, and is shaped as a SIP-trunk call's.
    sent = webhooks(service)
    _, problems = check(sent)
    assert not problems, "\n".join(sorted(set(problems))[:40])
    bodies = [json.loads(entry["body"]) for entry in sent]
    transcriptions = [b for b in bodies if b["type"] == "post_call_transcription"]
    failures = [b for b in bodies if b["type"] == "call_initiation_failure"]
    held = [c for c in conversations if c["status"] == "done"]
    assert len(transcriptions) == len(held) > 0
    for body in transcriptions:
        phone_call = body["data"]["metadata"]["phone_call"]
        assert phone_call["type"] == "sip_trunking"
        assert phone_call["agent_number"] and phone_call["external_number"] in PHONES
        assert "@" in phone_call["call_sid"]  # a SIP Call-ID, not a Twilio call SID
    assert len(failures) == len(conversations) - len(held) > 0
    assert {f["data"]["metadata"]["type"] for f in failures} == {"sip"}
    assert {f["data"]["failure_reason"] for f in failures} == {"busy", "no-answer", "unknown"}


def test_the_sandbox_serves_the_sdks_sip_trunk_call_and_the_campaign_api_checks_its_needs(
    service: Service,
) -> None:
    # The official SDK's own call reaches the sandbox and reads its answer.
    sdk = ElevenLabs(
        api_key=SANDBOX_ELEVENLABS_API_KEY, base_url=f"{service.url}/sandbox/elevenlabs"
    )
    placed = sdk.conversational_ai.sip_trunk.outbound_call(
        agent_id="agent_sandbox", agent_phone_number_id="phnum_trunk", to_number="+12125550101"
    )
    assert placed.success and placed.conversation_id and placed.sip_call_id
    got = sdk.conversational_ai.conversations.get(placed.conversation_id)
    assert got.conversation_id == placed.conversation_id and got.agent_id == "agent_sandbox"

    # A campaign names a registered connection, with the settings that connection needs.
    missing = service.api(
        "POST", "/api/v1/campaigns", json={**CAMPAIGN, "agent_phone_number_id": None}
    )
    assert missing.status_code == 400, missing.text
    assert "sip_trunk needs agent_id and agent_phone_number_id" in missing.text
    unknown = service.api(
        "POST", "/api/v1/campaigns", json={**CAMPAIGN, "agent_connection": "carrier_pigeon"}
    )
    assert unknown.status_code == 400, unknown.text
    assert "sip_trunk" in unknown.json()["error"]["message"]


@pytest.fixture
async def client(app_client: Any) -> Any:
    return await app_client(
        api_keys=(API_KEY,),
        sandbox_talk_seconds=2,
        housekeeping_seconds=1,
    )


async def run_one_call(client: Any, campaign: dict[str, Any], *, within: float) -> str:
    """A campaign of one contact, started in-process and waited for until it completes."""
    response = await client.post("/api/v1/campaigns", headers=HEADERS, json=campaign)
    assert response.status == 201, await response.text()
    campaign_id = str((await response.json())["id"])
    response = await client.post(
        f"/api/v1/campaigns/{campaign_id}/contacts",
        headers={**HEADERS, "Content-Type": "text/csv"},
        data=b"phone_number\n+12125550100\n",
    )
    assert response.status == 200, await response.text()
    response = await client.post(f"/api/v1/campaigns/{campaign_id}/start", headers=HEADERS)
    assert response.status == 200, await response.text()

    async def completed() -> bool:
        response = await client.get(f"/api/v1/campaigns/{campaign_id}", headers=HEADERS)
        return bool((await response.json())["status"] == "completed")

    await eventually(completed, within=within, what="the campaign to complete", every=0.1)
    return campaign_id


async def test_a_sip_trunk_call_whose_webhook_is_lost_is_settled_by_asking_elevenlabs(
    client: Any,
) -> None:
    agent: SandboxAgent = client.app[SANDBOX_AGENT]
    # Every post-call webhook goes nowhere: nothing but ElevenLabs' GET Conversation can say
    # how the call ended (no carrier callback reaches callbridge over a SIP trunk).
    agent._webhook_url = f"http://127.0.0.1:{free_port()}/lost"
    campaign_id = await run_one_call(client, {**CAMPAIGN, "max_attempts": 1}, within=30)
    (record,) = agent.conversations.values()
    assert record.status == "done"
    await eventually(lambda: len(record.webhooks) == 2, what="both webhooks tried")
    assert all(w["status"] is None for w in record.webhooks)
    response = await client.get(f"/api/v1/campaigns/{campaign_id}/calls", headers=HEADERS)
    (attempt,) = await response.json()
    assert attempt["provider_call_id"] == record.conversation_id
    assert (attempt["status"], attempt["outcome"]) == ("completed", "answered")


# The create's answer is lost after the call was placed: ElevenLabs places the call, then holds
# its answer past callbridge's provider timeout. ElevenLabs cannot list calls by number, so only
# the call's post-call report can say what became of it.
LOST_ANSWER = "agent_create_timeout=1,hang_seconds=4"


def test_a_sip_trunk_call_whose_create_answer_is_lost_is_dialled_once_and_takes_its_report(
    database_url: str, tmp_path: Path
) -> None:
    service = Service(
        database_url,
        tmp_path,
        CALLBRIDGE_SANDBOX_TALK_SECONDS="2",
        CALLBRIDGE_SANDBOX_FAULTS=LOST_ANSWER,
        CALLBRIDGE_PROVIDER_TIMEOUT_SECONDS="1",
        CALLBRIDGE_HOUSEKEEPING_SECONDS="1",
    ).start()
    try:
        # Three attempts allowed: an attempt taken as not placed would be dialled again.
        response = service.api("POST", "/api/v1/campaigns", json={**CAMPAIGN, "name": "lost"})
        assert response.status_code == 201, response.text
        campaign_id = response.json()["id"]
        upload(service, campaign_id, b"phone_number,first_name\n+12125550100,Ada\n")
        start(service, campaign_id)
        wait_completed(service, campaign_id, timeout=60)

        # Dialled exactly once, at the sandbox.
        (conversation,) = get_json(service, "/sandbox/elevenlabs/conversations")
        assert conversation["to_number"] == "+12125550100"
        assert conversation["status"] == "done"
        # The attempt learnt its call and its outcome from the post-call report.
        (attempt,) = service.api("GET", f"/api/v1/campaigns/{campaign_id}/calls").json()
        assert attempt["conversation_id"] == conversation["conversation_id"]
        assert attempt["provider_call_id"] == conversation["conversation_id"]
        assert (attempt["status"], attempt["outcome"]) == ("completed", "answered")
        assert attempt["transcript_summary"]
        (row,) = export_rows(service, campaign_id)
        assert (row["disposition"], row["attempts"]) == ("answered", "1")
    finally:
        service.stop()


async def test_a_sip_trunk_call_whose_create_answer_and_report_are_lost_ends_unconfirmed(
    app_client: Any,
) -> None:
    client = await app_client(
        api_keys=(API_KEY,),
        sandbox_talk_seconds=2,
        housekeeping_seconds=1,
        provider_timeout_seconds=1,
        sandbox_faults=Faults.parse(LOST_ANSWER),
        unconfirmed_grace_seconds=1,
    )
    agent: SandboxAgent = client.app[SANDBOX_AGENT]
    # Every post-call webhook goes nowhere as well.
    agent._webhook_url = f"http://127.0.0.1:{free_port()}/lost"
    # A short ring timeout and time limit: the grace period runs from when the call must
    # have ended. Three attempts allowed: a retry would be a second dial.
    campaign = {**CAMPAIGN, "ring_timeout_seconds": 5, "time_limit_seconds": 5}
    campaign_id = await run_one_call(client, campaign, within=45)
    # The call was placed and held; its report went nowhere.
    (record,) = agent.conversations.values()
    assert record.status == "done" and record.to_number == "+12125550100"
    await eventually(lambda: len(record.webhooks) == 2, what="both webhooks tried")
    assert all(w["status"] is None for w in record.webhooks)
    # The attempt ends failed, unconfirmed: it counts, and the contact is not called again.
    response = await client.get(f"/api/v1/campaigns/{campaign_id}/calls", headers=HEADERS)
    (attempt,) = await response.json()
    assert (attempt["status"], attempt["outcome"]) == ("failed", "failed")
    assert attempt["error_code"] == "unconfirmed"
    assert attempt["error_message"] == (
        "unconfirmed: the provider cannot say whether the call was placed"
    )
    response = await client.get(f"/api/v1/campaigns/{campaign_id}/contacts", headers=HEADERS)
    (contact,) = await response.json()
    assert (contact["state"], contact["disposition"]) == ("done", "failed")
    assert contact["attempts_made"] == 1
    assert len(agent.conversations) == 1
