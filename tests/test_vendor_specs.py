"""Everything the sandbox sends in a 50-contact campaign validates against the vendors' specs.

One campaign per agent mode (`stream`, `register`, `native`) runs through `callbridge serve` and
its sandbox. The sandbox keeps a journal of every request it sent, as sent (its delivery
module): the carrier's TwiML requests, status and AMD callbacks (to callbridge, or to the sandbox
agent for native calls), and the agent's post-call webhooks. Each is checked against the
specs copied under tests/specs/ (tests/specs/README.md says from where), its signature is
verified the vendor's way (twilio's RequestValidator, the elevenlabs SDK's construct_event),
and the count per message type is printed (`pytest -s`) and must be non-zero for the types
each mode produces.

The sandbox agent also journals every conversation WebSocket message, both ways (the `stream`
mode's relay talks to it): each is checked against ElevenLabs' agent AsyncAPI, server messages
and client messages alike, and counted by type.
"""

from __future__ import annotations

import base64
import functools
import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from elevenlabs.client import ElevenLabs
from twilio.request_validator import RequestValidator

from bridge.settings import (
    SANDBOX_ACCOUNT_SID,
    SANDBOX_AUTH_TOKEN,
    SANDBOX_ELEVENLABS_WEBHOOK_SECRET,
)
from tests.campaign_flow import AREA_CODES, start, upload, wait_completed
from tests.service import Service, wait_until
from tests.specs import asyncapi, openapi

CONTACTS = 50
TERMINAL = {"completed", "busy", "failed", "no-answer", "canceled"}


def spec(name: str) -> Callable[[Any], list[str]]:
    """The check of a payload against the schema ``name`` of tests/specs/ (see openapi.py)."""
    return functools.partial(openapi.errors, name)


# (source, kind) of a journal entry -> the check its payload must pass; kind "*": any kind.
SCHEMAS: dict[tuple[str, str], Callable[[Any], list[str]]] = {
    ("twilio", "twiml"): spec("twilio-voice-webhooks.json#VoiceRequest"),
    ("twilio", "status"): spec("twilio-voice-webhooks.json#StatusCallback"),
    ("twilio", "amd"): spec("twilio-voice-webhooks.json#AsyncAmdCallback"),
    ("elevenlabs", "post_call_transcription"): spec(
        "elevenlabs-post-call-webhooks.json#PostCallTranscription"
    ),
    ("elevenlabs", "post_call_audio"): spec("elevenlabs-post-call-webhooks.json#PostCallAudio"),
    ("agent-ws", "server"): lambda message: asyncapi.spec().server_errors(message),
    ("agent-ws", "client"): lambda message: asyncapi.spec().client_errors(message),
    ("elevenlabs", "call_initiation_failure"): spec(
        "elevenlabs-post-call-webhooks.json#CallInitiationFailure"
    ),
}
CALL_SCHEMA = "twilio-api-v2010-calls.json#api.v2010.account.call"
# What each mode must produce. Callbridge asks Twilio for asynchronous AMD; an agent placing
# its own calls (native) asks for synchronous AMD, whose verdict rides on the TwiML request.
REQUIRED = {
    "stream": {
        "agent-ws.server.conversation_initiation_metadata",
        "agent-ws.server.audio",
        "agent-ws.server.agent_response",
        "agent-ws.server.user_transcript",
        "agent-ws.client.conversation_initiation_client_data",
        "agent-ws.client.user_audio_chunk",
        "twilio.twiml",
        "twilio.status",
        "twilio.amd",
        "elevenlabs.post_call_transcription",
        "elevenlabs.post_call_audio",
        "twilio.Call",
    },
    "native": {
        "twilio.twiml",
        "twilio.twiml+AnsweredBy",
        "twilio.status",
        "elevenlabs.post_call_transcription",
        "elevenlabs.post_call_audio",
        "elevenlabs.call_initiation_failure",
        "twilio.Call",
    },
}
REQUIRED["register"] = {kind for kind in REQUIRED["stream"] if not kind.startswith("agent-ws")}


# Where each area code of the campaign is, written out: an oracle apart from the geocoder.
AREA_STATES = {
    "201": "NJ",
    "202": "DC",
    "212": "NY",
    "305": "FL",
    "312": "IL",
    "415": "CA",
    "503": "OR",
    "617": "MA",
    "646": "NY",
    "702": "NV",
    "808": "HI",
    "907": "AK",
}


def phones() -> list[str]:
    """Every second suffix 00..98, so each row of the sandbox's outcome table comes up, spread
    over area codes from New York to Alaska (the places in the callbacks differ)."""
    return [f"+1{AREA_CODES[i % len(AREA_CODES)]}5550{100 + 2 * i:03d}" for i in range(CONTACTS)]


def contacts_csv() -> bytes:
    rows = ["phone_number,id,first_name"]
    rows += [f"{p},ext-{i},Person {i}" for i, p in enumerate(phones())]
    return ("\n".join(rows) + "\n").encode()


pytestmark = pytest.mark.service_env(
    # Talk long enough for the agent to greet, hear the callee and answer.
    CALLBRIDGE_SANDBOX_TALK_SECONDS="3",
)


def get_json(service: Service, path: str, **kw: Any) -> Any:
    response = requests.get(f"{service.url}{path}", timeout=30, **kw)
    response.raise_for_status()
    return response.json()


def sent(service: Service) -> list[dict[str, Any]]:
    """The sandbox's journals: the carrier's requests, the agent's webhooks, and the agent's
    conversation WebSocket messages both ways."""
    messages = get_json(service, "/sandbox/elevenlabs/messages")
    # The journal is bounded: a message lost to its limit would go unchecked.
    assert not messages or messages[0]["seq"] == 1, "the message journal overflowed"
    return [
        *get_json(service, "/sandbox/sent"),
        *get_json(service, "/sandbox/elevenlabs/sent"),
        *(
            {"source": "agent-ws", "kind": m["direction"], "message": m["message"]}
            for m in messages
        ),
    ]


def calls(service: Service) -> list[dict[str, Any]]:
    """Every Call resource, through Twilio's own list endpoint (the SDK follows the pages)."""
    path = f"/sandbox/2010-04-01/Accounts/{SANDBOX_ACCOUNT_SID}/Calls.json?PageSize=1000"
    return list(get_json(service, path, auth=(SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN))["calls"])


def all_delivered(service: Service) -> bool:
    """Every call over with its last status callback sent, and every finished conversation
    reported by its two webhooks (or its failure by one)."""
    entries = sent(service)
    terminal_callbacks = {
        e["params"]["CallSid"]
        for e in entries
        if e["kind"] == "status" and e["params"].get("CallStatus") in TERMINAL
    }
    if any(
        c["status"] not in TERMINAL or c["sid"] not in terminal_callbacks for c in calls(service)
    ):
        return False
    reported = Counter(
        (json.loads(e["body"])["data"]["conversation_id"], e["kind"])
        for e in entries
        if e["source"] == "elevenlabs"
    )
    for record in get_json(service, "/sandbox/elevenlabs/conversations"):
        conversation = record["conversation_id"]
        if record["status"] == "in-progress":
            return False  # its webhooks are still to come
        if record["status"] == "done":
            expected = ("post_call_transcription", "post_call_audio")
        elif record["status"] == "failed" and record["call_sid"]:
            expected = ("call_initiation_failure",)
        else:
            continue
        if any(not reported[(conversation, kind)] for kind in expected):
            return False
    return True


def _twilio(entry: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The request's parameters, and its signature checked as callbridge checks it."""
    validator = RequestValidator(SANDBOX_AUTH_TOKEN)
    if entry["method"] == "GET":
        params = dict(parse_qsl(urlsplit(entry["url"]).query, keep_blank_values=True))
        signed = validator.validate(entry["url"], {}, entry["signature"])
    else:
        params = entry["params"]
        signed = validator.validate(entry["url"], params, entry["signature"])
    return params, [] if signed else [f"bad X-Twilio-Signature on {entry['kind']}"]


def _elevenlabs(entry: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The webhook's envelope as the official SDK verifies it, and what else it breaks."""
    problems: list[str] = []
    try:
        envelope = ElevenLabs(api_key="unused").webhooks.construct_event(
            entry["body"], entry["signature"], SANDBOX_ELEVENLABS_WEBHOOK_SECRET
        )
    except Exception as exc:  # the SDK's BadRequestError, whatever its module
        return json.loads(entry["body"]), [f"construct_event refused {entry['kind']}: {exc!r}"]
    if envelope["type"] == "post_call_audio":
        audio = base64.b64decode(envelope["data"]["full_audio"], validate=True)
        # An MPEG audio frame starts with 11 set bits.
        if not (audio[:1] == b"\xff" and audio[1] & 0xE0 == 0xE0):
            problems.append("post_call_audio full_audio is not MP3")
    return envelope, problems


def _places(params: dict[str, Any]) -> list[str]:
    """The callee's place in a Twilio request is where its area code is."""
    if "ToState" not in params:
        return []
    area = str(params["To"])[2:5]
    expected = {"ToState": AREA_STATES[area], "CalledState": AREA_STATES[area]}
    expected |= {"ToCountry": "US", "CalledCountry": "US", "FromCountry": "US"}
    return [
        f"{key}={params.get(key)!r} for {params['To'][:5]}..., expected {value!r}"
        for key, value in expected.items()
        if params.get(key) != value
    ]


CHECKERS: dict[str, Callable[[dict[str, Any]], tuple[Any, list[str]]]] = {
    "twilio": _twilio,
    "elevenlabs": _elevenlabs,
    "agent-ws": lambda entry: (entry["message"], []),
}


def check(entries: list[dict[str, Any]]) -> tuple[Counter[str], list[str]]:
    counts: Counter[str] = Counter()
    problems: list[str] = []
    for entry in entries:
        source, kind = entry["source"], entry["kind"]
        counts[f"{source}.{kind}"] += 1
        if source == "agent-ws":
            counts[f"{source}.{kind}.{asyncapi.message_type(entry['message'])}"] += 1
        schema = SCHEMAS.get((source, kind)) or SCHEMAS.get((source, "*"))
        if schema is None or source not in CHECKERS:
            problems.append(f"no spec for {source} {kind}")
            continue
        payload, found = CHECKERS[source](entry)
        problems += found + schema(payload) + _places(payload)
        if kind == "twiml" and "AnsweredBy" in payload:
            counts["twilio.twiml+AnsweredBy"] += 1
        if source == "agent-ws":
            continue  # a message, not a request: nothing answers it
        if entry["response_status"] is None or entry["response_status"] >= 300:
            problems.append(f"{source} {kind} answered {entry['response_status']}")
    return counts, problems


@pytest.mark.parametrize("mode", ["stream", "register", "native"])
def test_everything_the_sandbox_sends_matches_the_vendors_specs(
    service: Service, mode: str
) -> None:
    began = time.monotonic()
    response = service.api(
        "POST",
        "/api/v1/campaigns",
        json={
            "name": f"specs-{mode}",
            "agent_id": "agent_sandbox",
            "agent_connection": mode,
            "agent_phone_number_id": "phnum_sandbox",
            "from_number": "+15005550006",
            "max_attempts": 3,
            "retry_delay_seconds": 1,
            "concurrency": 50,
            "machine_detection": "DetectMessageEnd",
        },
    )
    assert response.status_code == 201, response.text
    campaign_id = response.json()["id"]
    upload(service, campaign_id, contacts_csv())
    start(service, campaign_id)
    wait_completed(service, campaign_id, timeout=90)
    wait_until(lambda: all_delivered(service), timeout=30, interval=0.2, what="every webhook sent")

    counts, problems = check(sent(service))
    for call in calls(service):
        counts["twilio.Call"] += 1
        problems += openapi.errors(CALL_SCHEMA, call)
    print(f"\n{mode}: {sum(counts.values())} messages in {time.monotonic() - began:.1f} s")
    for kind, count in sorted(counts.items()):
        print(f"  {kind:42} {count:5}")
    print(f"  {'errors':42} {len(problems):5}")
    assert not problems, "\n".join(sorted(set(problems))[:40])
    missing = {kind for kind in REQUIRED[mode] if not counts[kind]}
    assert not missing, f"{mode} produced none of {sorted(missing)}"
