"""How a sandbox agent conversation goes, whatever carries its audio, and what it reports.

The agent greets, listens, and either hears a voicemail beep (it then calls its
voicemail_detection tool, leaves a short message and ends the call) or a person (it answers
after a few frames and ends the call). The report is an ElevenLabs post-call webhook body.
On the conversation WebSocket a narrator (agent_events.py) also sends the turns as text and
the other server messages; some agents (by id) call a client tool or fail mid-call.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from bridge.sandbox import agent_audio, recording
from bridge.sandbox.agent_events import (
    ERROR_CLOSE_CODE,
    FOLLOW_UP_TOOL_WAIT_SECONDS,
    FOLLOW_UP_TOOLS,
    TOOL_WAIT_SECONDS,
    Narrator,
)

# The callee's turn is over after this much silence (0.1 s) following speech.
END_OF_TURN_FRAMES = 5
REPLY_FRAMES = 5
# A callee that stays silent this long is treated as gone.
SILENCE_TIMEOUT_SECONDS = 10.0
VOICEMAIL_TERMINATION = "voicemail_detection tool was called."
CALLEE_WORDS = "Yes, speaking."
REPLY = "Thank you, goodbye."


# A failed call's SIP response by its status, where the carrier gave none, and their texts.
SIP_FAILURES = {"busy": 486, "no-answer": 487}
SIP_REASONS = {486: "Busy Here", 487: "Request Terminated", 500: "Server Internal Error"}


def new_conversation_id() -> str:
    return "conv_" + uuid.uuid4().hex[:24]


@dataclass
class ConversationRecord:
    """Everything the sandbox agent received and did in one conversation."""

    conversation_id: str
    agent_id: str
    mode: str  # websocket | register | native | sip_trunk
    dynamic_variables: dict[str, Any] = field(default_factory=dict)
    conversation_config_override: dict[str, Any] | None = None
    # conversation_initiation_client_data.user_id: who the caller says the person is.
    user_id: str | None = None
    to_number: str | None = None
    from_number: str | None = None
    call_sid: str | None = None
    # A SIP-trunk call's SIP Call-ID (call_sid is then the sandbox carrier's own leg).
    sip_call_id: str | None = None
    # The Media Stream the call's audio came over, and the agent's phone number (native calls).
    stream_sid: str | None = None
    phone_number_id: str | None = None
    status: str = "initiated"  # initiated | in-progress | done | failed
    user_frames: int = 0
    agent_frames: int = 0
    pongs: int = 0
    interruptions: int = 0
    marks: list[str] = field(default_factory=list)
    voicemail: bool = False
    ended_by: str | None = None  # agent | callee | error
    # What the callee asked for, as heard ("<item>=<value>", number_table.follow_up_words).
    asked: str | None = None
    # Client tools the agent called: {tool_name, tool_call_id, result, is_error, answered_after_ms}.
    client_tool_calls: list[dict[str, Any]] = field(default_factory=list)
    failure_reason: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    webhooks: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Channel(Protocol):
    """One conversation's audio path (the conversation WebSocket or a Twilio Media Stream)."""

    # Sends the conversation's other messages; None where the path carries audio only.
    narrator: Narrator | None

    async def say(self, frame: bytes) -> None: ...

    async def speak(self) -> None:
        """Say the agent's next 20 ms (its voice, in the channel's format)."""
        ...

    async def hear(self) -> bytes | None:
        """The callee's next frame; None once the other side has gone."""
        ...

    async def interrupt(self) -> None:
        """Stop the agent's audio still being played (the callee talks over it)."""
        ...

    async def end(self, code: int = 1000) -> None: ...


async def converse(record: ConversationRecord, channel: Channel) -> None:
    record.status = "in-progress"
    record.started_at = time.time()
    narrator = channel.narrator
    if narrator is not None:
        await narrator.agent_turn(_greeting(record.dynamic_variables))
    for _ in range(agent_audio.GREETING_FRAMES):
        await channel.speak()
        record.agent_frames += 1
    if narrator is not None:
        await narrator.agent_turn_done()
    silent = 0
    spoke = False
    while True:
        try:
            frame = await asyncio.wait_for(channel.hear(), SILENCE_TIMEOUT_SECONDS)
        except TimeoutError:
            frame = None
        if frame is None:
            record.ended_by = "callee"
            break
        record.user_frames += 1
        words = agent_audio.words_in(frame)
        if words:
            record.asked = words
        if narrator is not None:
            speech = not (agent_audio.is_silence(frame) or agent_audio.is_beep(frame))
            await narrator.heard(record.user_frames, speech)
        if agent_audio.is_beep(frame):
            record.voicemail = True
        elif agent_audio.is_silence(frame):
            silent += 1
            if not (spoke and silent >= END_OF_TURN_FRAMES):
                continue
        else:
            if not spoke:
                # The callee talks over the greeting: barge-in.
                await channel.interrupt()
                record.interruptions += 1
                if narrator is not None:
                    await narrator.cut_off()
            spoke = True
            silent = 0
            continue
        if narrator is not None and await _between_turns(record, channel, narrator):
            break
        if narrator is not None:
            await narrator.agent_turn(REPLY)
        for _ in range(REPLY_FRAMES):
            await channel.speak()
            record.agent_frames += 1
        if narrator is not None:
            await narrator.agent_turn_done()
        record.ended_by = "agent"
        break
    record.status = "done"
    record.ended_at = time.time()
    await channel.end(ERROR_CLOSE_CODE if record.ended_by == "error" else 1000)


async def _between_turns(record: ConversationRecord, channel: Channel, narrator: Narrator) -> bool:
    """The callee's turn is over: transcribe it, then call the client tool or fail, as the agent
    does. True when the conversation ends here (on an error, or the callee hanging up)."""
    if not record.voicemail:
        await narrator.callee_turn(callee_words(record))
    behaviour = narrator.behaviour
    if behaviour.error_mid_call:
        await narrator.fail()
        record.ended_by = "error"
        return True
    if behaviour.client_tool:
        await narrator.call_client_tool(behaviour.client_tool, {"account": "sandbox"})
        await _await_tool(record, channel, narrator)
    asked = follow_up(record)
    if behaviour.follow_up_tools and asked is not None:
        tool, parameter = FOLLOW_UP_TOOLS[asked[0]]
        await narrator.call_client_tool(tool, {parameter: asked[1]} if parameter else {})
        await _await_tool(record, channel, narrator, FOLLOW_UP_TOOL_WAIT_SECONDS)
    return record.ended_by is not None


async def _await_tool(
    record: ConversationRecord,
    channel: Channel,
    narrator: Narrator,
    wait_seconds: float = TOOL_WAIT_SECONDS,
) -> None:
    narrator.tool_answered.clear()
    deadline = time.monotonic() + wait_seconds
    # The callee's audio keeps coming while the agent waits: the result is read with it.
    while not narrator.tool_answered.is_set() and time.monotonic() < deadline:
        try:
            frame = await asyncio.wait_for(channel.hear(), deadline - time.monotonic())
        except TimeoutError:
            break
        if frame is None:
            record.ended_by = "callee"
            break
        record.user_frames += 1
    record.client_tool_calls = [
        {k: v for k, v in call.items() if k != "sent_at"} for call in narrator.tool_calls
    ]


def follow_up(record: ConversationRecord) -> tuple[str, str] | None:
    """(item, value) of the follow-up the callee asked for, or None."""
    if not record.asked or "=" not in record.asked:
        return None
    item, _, value = record.asked.partition("=")
    return (item, value) if item in FOLLOW_UP_TOOLS else None


def callee_words(record: ConversationRecord) -> str:
    """What the callee said in their turn, as the transcript shows it."""
    asked = follow_up(record)
    if asked is None:
        return CALLEE_WORDS
    item, value = asked
    if item == "callback_time":
        return f"{CALLEE_WORDS} Please call me back at {value}."
    if item == "redirect_phone_number":
        return f"{CALLEE_WORDS} Please call me on {value} instead."
    return f"{CALLEE_WORDS} Please do not call me again."


def _collected(record: ConversationRecord) -> dict[str, Any]:
    """The data collection results: what the agent counted, and the follow-up asked for."""
    results: dict[str, Any] = {
        "frames_heard": {
            "data_collection_id": "frames_heard",
            "value": record.user_frames,
            "rationale": "counted by the sandbox agent",
        }
    }
    asked = follow_up(record)
    if asked is not None:
        item, value = asked
        results[item] = {
            "data_collection_id": item,
            "value": True if item == "stop" else value,
            "rationale": "said by the callee",
        }
    return results


def _greeting(variables: dict[str, Any]) -> str:
    name = variables.get("first_name") or variables.get("name") or "there"
    return f"Hello {name}, this is the sandbox agent."


def summary(record: ConversationRecord) -> str:
    shown = ", ".join(f"{k}={v}" for k, v in sorted(record.dynamic_variables.items()))
    if record.voicemail:
        return f"Reached voicemail and left a message ({shown})."
    return f"Spoke with the contact ({shown})."


def _duration(record: ConversationRecord) -> tuple[float, int]:
    started = record.started_at or time.time()
    return started, max(1, round((record.ended_at or started) - started))


def transcription_webhook(record: ConversationRecord) -> dict[str, Any]:
    """The `post_call_transcription` body: a GET Conversation response, as ElevenLabs sends it."""
    started, duration = _duration(record)
    transcript: list[dict[str, Any]] = [
        {
            "role": "agent",
            "message": _greeting(record.dynamic_variables),
            "tool_calls": [],
            "time_in_call_secs": 0,
        }
    ]
    if record.voicemail:
        transcript.append(
            {
                "role": "agent",
                "message": None,
                "tool_calls": [
                    {
                        "type": "system",
                        "tool_name": "voicemail_detection",
                        "params_as_json": "{}",
                        "request_id": "voicemail_detection_1",
                        "tool_has_been_called": True,
                    }
                ],
                "time_in_call_secs": duration,
            }
        )
        reason = VOICEMAIL_TERMINATION
    else:
        if record.user_frames:
            transcript.append(
                {
                    "role": "user",
                    "message": callee_words(record),
                    "tool_calls": [],
                    "time_in_call_secs": 1,
                }
            )
        transcript.append(
            {
                "role": "agent",
                "message": "Thank you, goodbye.",
                "tool_calls": [],
                "time_in_call_secs": duration,
            }
        )
        reason = (
            "end_call tool was called."
            if record.ended_by == "agent"
            else "Call ended by remote party"
        )
    metadata: dict[str, Any] = {
        "start_time_unix_secs": int(started),
        "call_duration_secs": duration,
        "termination_reason": reason,
        "features_usage": {"voicemail_detection": {"used": record.voicemail}},
    }
    if record.mode == "sip_trunk" and record.sip_call_id:
        metadata["phone_call"] = {
            "type": "sip_trunking",
            "direction": "outbound",
            "phone_number_id": record.phone_number_id or "",
            "call_sid": record.sip_call_id,
            "external_number": record.to_number or "",
            "agent_number": record.from_number or "",
            "call_result": _call_result(record),
        }
    elif record.call_sid:
        metadata["phone_call"] = {
            "type": "twilio",
            "direction": "outbound",
            "phone_number_id": record.phone_number_id or "",
            "call_sid": record.call_sid,
            "stream_sid": record.stream_sid or "",
            "external_number": record.to_number or "",
            "agent_number": record.from_number or "",
        }
    return {
        "type": "post_call_transcription",
        "event_timestamp": int(time.time()),
        "data": {
            "agent_id": record.agent_id,
            "conversation_id": record.conversation_id,
            "status": "done",
            "has_audio": bool(record.user_frames or record.agent_frames),
            "has_user_audio": record.user_frames > 0,
            "has_response_audio": record.agent_frames > 0,
            "has_auxiliary_audio": False,
            "transcript": transcript,
            "metadata": metadata,
            "analysis": {
                "call_successful": "failure" if record.voicemail else "success",
                "transcript_summary": summary(record),
                "data_collection_results": _collected(record),
            },
            "conversation_initiation_client_data": {
                "dynamic_variables": record.dynamic_variables,
                # An object whatever the call sent: ElevenLabs reports the overrides it applied.
                "conversation_config_override": record.conversation_config_override or {},
            },
        },
    }


def _call_result(record: ConversationRecord) -> str:
    """phone_call.call_result: how the call went, as ElevenLabs reports it for SIP-trunk calls."""
    if record.status == "failed":
        return {"busy": "busy", "no-answer": "no_answer"}.get(record.failure_reason or "", "failed")
    return "voicemail" if record.voicemail else "answered"


def audio_webhook(record: ConversationRecord) -> dict[str, Any]:
    """The `post_call_audio` body: the conversation's recording, base64 MP3."""
    _, duration = _duration(record)
    return {
        "type": "post_call_audio",
        "event_timestamp": int(time.time()),
        "data": {
            "agent_id": record.agent_id,
            "conversation_id": record.conversation_id,
            "full_audio": recording.full_audio(duration),
        },
    }


def initiation_failure_webhook(record: ConversationRecord, form: dict[str, str]) -> dict[str, Any]:
    status = form.get("CallStatus", "")
    reason = status if status in ("busy", "no-answer") else "unknown"
    metadata: dict[str, Any] = {"type": "twilio", "body": form}
    if record.mode == "sip_trunk":
        # The trunk's final SIP response to the INVITE, not a Twilio callback.
        code = int(form.get("SipResponseCode") or SIP_FAILURES.get(status, 500))
        metadata = {
            "type": "sip",
            "body": {
                "sip_call_id": record.sip_call_id or "",
                "sip_status_code": code,
                "sip_status_text": SIP_REASONS.get(code, ""),
            },
        }
    return {
        "type": "call_initiation_failure",
        "event_timestamp": int(time.time()),
        "data": {
            "agent_id": record.agent_id,
            "conversation_id": record.conversation_id,
            "failure_reason": reason,
            "metadata": metadata,
        },
    }
