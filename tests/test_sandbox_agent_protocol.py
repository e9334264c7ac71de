"""Calls through the whole sandbox (carrier, Media Stream, relay, sandbox agent) exercise every
message type of ElevenLabs' agent AsyncAPI, and every one validates against it.

The service runs in this process, so the sandbox agent's wire tap sees each conversation
WebSocket message both ways. Three campaigns use three agents, chosen by id: one plain (it
sends all the other server message types), one that calls a client tool callbridge does not
have, one that fails mid-call.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from bridge.app_keys import SANDBOX_AGENT, SESSIONMAKER
from bridge.sandbox import agent_events
from bridge.sandbox.agent import SandboxAgent
from campaigns.models import Attempt
from tests.conftest import eventually
from tests.service import API_KEY
from tests.specs.asyncapi import Tally, spec

HUMANS = ["+12125550101", "+12125550102"]
VOICEMAIL = "+12125550161"
AGENTS = ["agent_sandbox", "agent_client_tool", "agent_error_mid_call"]
HEADERS = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
async def client(app_client: Any) -> Any:
    return await app_client(
        api_keys=(API_KEY,),
        # Long enough that the agent, not the callee, ends each answered conversation.
        sandbox_talk_seconds=8,
        housekeeping_seconds=1,
    )


async def run_campaign(client: Any, agent_id: str) -> str:
    response = await client.post(
        "/api/v1/campaigns",
        headers=HEADERS,
        json={
            "name": agent_id,
            "agent_id": agent_id,
            "agent_connection": "stream",
            "from_number": "+15005550006",
            "max_attempts": 1,
            "machine_detection": "",
        },
    )
    assert response.status == 201, await response.text()
    campaign_id = str((await response.json())["id"])
    # Override columns too, so the initiation data's conversation_config_override is checked.
    rows = "phone_number,first_name,language,first_message,system_prompt,voice_id\n" + "".join(
        f"{p},Ada,en,Hi {{{{first_name}}}},Be brief.,voice_1\n" for p in [*HUMANS, VOICEMAIL]
    )
    response = await client.post(
        f"/api/v1/campaigns/{campaign_id}/contacts",
        headers={**HEADERS, "Content-Type": "text/csv"},
        data=rows.encode(),
    )
    assert response.status == 200, await response.text()
    response = await client.post(f"/api/v1/campaigns/{campaign_id}/start", headers=HEADERS)
    assert response.status == 200, await response.text()

    async def completed() -> bool:
        response = await client.get(f"/api/v1/campaigns/{campaign_id}", headers=HEADERS)
        return bool((await response.json())["status"] == "completed")

    await eventually(completed, within=90, what=f"the campaign of {agent_id}", every=0.1)
    return campaign_id


async def test_calls_through_the_sandbox_exercise_and_validate_every_message_type(
    client: Any,
) -> None:
    agent: SandboxAgent = client.app[SANDBOX_AGENT]
    server, sent_by_client = Tally("server"), Tally("client")
    agent.wire_tap = lambda side, message: (server if side == "server" else sent_by_client).check(
        message
    )

    campaigns = await asyncio.gather(*(run_campaign(client, a) for a in AGENTS))

    print(server.report())
    print(sent_by_client.report())
    assert server.errors == [] and sent_by_client.errors == []
    assert set(server.counts) == set(spec().server_types)  # all 27
    assert len(server.counts) == 27
    assert {"conversation_initiation_client_data", "user_audio_chunk", "pong"} <= set(
        sent_by_client.counts
    )
    # The client tool agent calls it in every answered call, the voicemail one included.
    assert sent_by_client.counts["client_tool_result"] == len(HUMANS) + 1
    initiation = next(iter(agent.conversations.values())).conversation_config_override
    assert initiation == {
        "agent": {
            "first_message": "Hi {{first_name}}",
            "language": "en",
            "prompt": {"prompt": "Be brief."},
        },
        "tts": {"voice_id": "voice_1"},
    }

    async with client.app[SESSIONMAKER]() as session:
        attempts = list(await session.scalars(select(Attempt)))
    by_campaign = {c: [a for a in attempts if a.campaign_id == c] for c in campaigns}
    records = {r.conversation_id: r for r in agent.conversations.values()}
    plain, tool, failing = (by_campaign[c] for c in campaigns)

    for attempt in plain:
        record = records[str(attempt.conversation_id)]
        assert attempt.outcome == ("voicemail" if attempt.phone_number == VOICEMAIL else "answered")
        if attempt.phone_number in HUMANS:
            lines = [(t["role"], t["message"]) for t in attempt.live_transcript or []]
            # The callee talked over the greeting: the agent's correction shows what was heard.
            assert lines == [
                ("agent", "Hello Ada..."),
                ("user", "Yes, speaking."),
                ("agent", "Thank you, goodbye."),
            ]
            assert (attempt.live_transcript or [{}])[0].get("interrupted") is True
            assert record.ended_by == "agent" and attempt.agent_error is None

    for attempt in tool:
        record = records[str(attempt.conversation_id)]
        (call,) = record.client_tool_calls
        assert call["tool_name"] == agent_events.CLIENT_TOOL and call["is_error"] is True
        assert "callbridge has no client tool named 'lookup_account'" in call["result"]
        assert call["answered_after_ms"] < 1000
        # The conversation went on to its normal end: the agent replied and hung up.
        assert record.ended_by == "agent"
        assert attempt.outcome == ("answered" if attempt.phone_number in HUMANS else "voicemail")
        assert [(c["tool_name"], c["is_error"]) for c in attempt.tool_calls or []] == [
            ("lookup_account", True)
        ]
        print(f"client tool answered in {call['answered_after_ms']} ms")

    for attempt in failing:
        if attempt.phone_number not in HUMANS:
            continue
        record = records[str(attempt.conversation_id)]
        assert record.ended_by == "error"
        assert attempt.agent_error == f"1002 llm_timeout: {agent_events.ERROR_MESSAGE}"
        assert attempt.status == "completed" and attempt.ended_at is not None

    # The REST API shows the same to systems that read the calls.
    response = await client.get(f"/api/v1/campaigns/{campaigns[2]}/calls", headers=HEADERS)
    calls = {c["phone_number"]: c for c in await response.json()}
    assert calls[HUMANS[0]]["agent_error"] == f"1002 llm_timeout: {agent_events.ERROR_MESSAGE}"
    last = calls[HUMANS[0]]["live_transcript"][-1]
    assert (last["role"], last["message"]) == ("user", "Yes, speaking.")
    assert set(last) == {"role", "message", "time_in_call_secs"}
