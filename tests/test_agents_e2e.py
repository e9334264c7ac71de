"""Answered calls reach the sandbox agent in each agent_connection mode, end to end.

`callbridge serve` runs with its sandbox carrier and sandbox agent: the carrier plays each
callee (a person, a voicemail box, a busy line) over a real Media Stream, the agent records
what it was given and sends signed post-call webhooks back to the service.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.campaign_flow import campaign, start, upload, wait_completed
from tests.service import Service, wait_until

CONTACTS = {
    "+12125550101": {"first_name": "Ada", "balance": "12.50", "plan": "gold"},
    "+12125550102": {"first_name": "Grace", "balance": "0", "plan": "basic"},
    "+12125550161": {"first_name": "Alan", "balance": "99", "plan": "silver"},  # voicemail
    "+12125550181": {"first_name": "Edsger", "balance": "7", "plan": "basic"},  # busy
}
EXPECTED_OUTCOME = {
    "+12125550101": "answered",
    "+12125550102": "answered",
    "+12125550161": "voicemail",
    "+12125550181": "busy",
}
AGENT_MODE = {"register": "register", "stream": "websocket", "native": "native"}


def contacts_csv() -> bytes:
    rows = ["phone_number,id,first_name,balance,plan"]
    rows += [
        f"{phone},ext-{i},{v['first_name']},{v['balance']},{v['plan']}"
        for i, (phone, v) in enumerate(CONTACTS.items())
    ]
    return ("\n".join(rows) + "\n").encode()


pytestmark = pytest.mark.service_env(
    # Long enough talk time that the agent, not the callee, ends each answered conversation.
    CALLBRIDGE_SANDBOX_TALK_SECONDS="8",
)


def get_json(service: Service, path: str) -> Any:
    response = requests.get(f"{service.url}{path}", timeout=30)
    response.raise_for_status()
    return response.json()


@pytest.mark.parametrize("mode", ["register", "stream", "native"])
def test_agent_gets_each_contacts_variables_and_reports_back(service: Service, mode: str) -> None:
    response = service.api(
        "POST",
        "/api/v1/campaigns",
        json={
            "name": f"agents-{mode}",
            "agent_id": "agent_sandbox",
            "agent_connection": mode,
            "agent_phone_number_id": "phnum_sandbox",
            "from_number": "+15005550006",
            "max_attempts": 1,
            # No Twilio answering-machine detection: voicemail must come from the agent.
            "machine_detection": "",
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["agent_connection"] == mode
    campaign_id = response.json()["id"]
    upload(service, campaign_id, contacts_csv())
    start(service, campaign_id)
    state = wait_completed(service, campaign_id, timeout=90)
    assert state["counts"]["dispositions"] | {} == {
        **state["counts"]["dispositions"],
        "answered": 2,
        "voicemail": 1,
        "busy": 1,
        "failed": 0,
    }

    attempts = service.api("GET", f"/api/v1/campaigns/{campaign_id}/calls").json()
    assert {a["phone_number"]: a["outcome"] for a in attempts} == EXPECTED_OUTCOME
    # The recording's webhook follows the transcription's: wait until each conversation sent both.
    wait_until(
        lambda: all(
            len(c["webhooks"]) == 2
            for c in get_json(service, "/sandbox/elevenlabs/conversations")
            if c["status"] == "done"
        ),
        timeout=30,
        what="every conversation's webhooks",
    )
    conversations = {
        c["conversation_id"]: c for c in get_json(service, "/sandbox/elevenlabs/conversations")
    }
    for attempt in attempts:
        phone = attempt["phone_number"]
        if EXPECTED_OUTCOME[phone] == "busy":
            continue
        record = conversations[attempt["conversation_id"]]
        assert record["mode"] == AGENT_MODE[mode]
        assert record["agent_id"] == "agent_sandbox"
        # Exactly the contact's columns, as strings, nothing added or lost.
        assert record["dynamic_variables"] == CONTACTS[phone]
        # The transcription, then the recording (which callbridge acknowledges and ignores).
        assert record["webhooks"] == [
            {"type": "post_call_transcription", "status": 200},
            {"type": "post_call_audio", "status": 200},
        ]
        assert record["user_frames"] > 0 and record["agent_frames"] > 0
        assert (
            attempt["transcript_summary"]
            and CONTACTS[phone]["first_name"] in (attempt["transcript_summary"])
        )
        assert attempt["transcript"] and attempt["transcript"][0]["role"] == "agent"
        assert attempt["conversation_seconds"] is not None
        voicemail = EXPECTED_OUTCOME[phone] == "voicemail"
        assert record["voicemail"] is voicemail
        assert attempt["call_successful"] == ("failure" if voicemail else "success")
        # The callee heard the agent: its audio came back over the Media Stream.
        media = get_json(
            service, f"/sandbox/calls/{record['call_sid'] or attempt['provider_call_id']}/media"
        )
        assert media["frames_received"] > 0 and media["frames_sent"] > 0
        # The callee talked over the agent's greeting once: Twilio was told to clear once.
        assert record["interruptions"] == 1 and media["clears"] == 1
    busy = next(a for a in attempts if EXPECTED_OUTCOME[a["phone_number"]] == "busy")
    if mode == "native":
        # Nobody answered: ElevenLabs reports it with call_initiation_failure, not Twilio.
        failures = [c for c in conversations.values() if c["to_number"] == busy["phone_number"]]
        assert [c["webhooks"] for c in failures] == [
            [{"type": "call_initiation_failure", "status": 200}]
        ]
        assert busy["conversation_id"] == failures[0]["conversation_id"]
    assert campaign(service, campaign_id)["status"] == "completed"
