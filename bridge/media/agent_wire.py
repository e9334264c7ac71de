"""ElevenLabs conversation WebSocket wire format (client side): server events parsed, client
messages built. Audio stays base64 μ-law 8000 both ways, as a Twilio call needs it.

Every server message type parses: the ones the relay acts on into their own event, the rest
(vad_score, internal_*, types added after this was written) into `Other`, never an error."""

from __future__ import annotations

import json
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _string
from typing import Any

from bridge.wire_values import whole_number


@dataclass(frozen=True, slots=True)
class Metadata:
    conversation_id: str
    agent_output_audio_format: str | None = None
    user_input_audio_format: str | None = None


# Slotted: one of these per 20 ms frame, and no per-instance dict for the collector to track.
# Not frozen: a frozen dataclass sets each field through object.__setattr__, twice the cost
# of building it (1.1 against 0.5 µs), 50 times a second per call; nothing changes it.
@dataclass(slots=True)
class Audio:
    payload: str
    event_id: int


@dataclass(frozen=True, slots=True)
class Interruption:
    event_id: int


@dataclass(frozen=True, slots=True)
class Ping:
    event_id: int
    ping_ms: int | None = None


@dataclass(frozen=True, slots=True)
class UserTranscript:
    text: str
    event_id: int


@dataclass(frozen=True, slots=True)
class AgentResponse:
    text: str
    event_id: int


@dataclass(frozen=True, slots=True)
class AgentResponseCorrection:
    """What the agent meant to say, and what was said before the callee cut in."""

    original: str
    corrected: str
    event_id: int


@dataclass(frozen=True, slots=True)
class ClientToolCall:
    tool_name: str
    tool_call_id: str
    parameters: dict[str, Any]
    event_id: int


@dataclass(frozen=True, slots=True)
class AgentError:
    """The agent's last word before it closes the conversation on an error."""

    code: int
    message: str
    error_type: str | None = None

    def describe(self) -> str:
        kind = f" {self.error_type}" if self.error_type else ""
        return f"{self.code}{kind}: {self.message}" if self.message else f"{self.code}{kind}"


@dataclass(frozen=True, slots=True)
class Other:
    """Anything the relay has no use for: vad_score, internal_*, text-only parts, new types."""

    type: str


AgentEvent = (
    Metadata
    | Audio
    | Interruption
    | Ping
    | UserTranscript
    | AgentResponse
    | AgentResponseCorrection
    | ClientToolCall
    | AgentError
    | Other
)


def _int(value: object) -> int:
    # Event ids and codes: 0 when the agent sent none that reads as a number.
    return whole_number(value) or 0


def _event(message: dict[str, Any], key: str) -> dict[str, Any]:
    event = message.get(key)
    return event if isinstance(event, dict) else {}


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def parse(text: str) -> AgentEvent:
    """One server message. Raises ValueError when it is not a JSON object."""
    message = json.loads(text)
    if not isinstance(message, dict):
        raise ValueError("a conversation message is a JSON object")
    kind = str(message.get("type", ""))
    if kind == "audio":
        event = message.get("audio_event") or {}
        return Audio(str(event.get("audio_base_64", "")), _int(event.get("event_id")))
    if kind == "ping":
        event = message.get("ping_event") or {}
        ping_ms = event.get("ping_ms")
        return Ping(_int(event.get("event_id")), _int(ping_ms) if ping_ms is not None else None)
    if kind == "interruption":
        return Interruption(_int((message.get("interruption_event") or {}).get("event_id")))
    if kind == "conversation_initiation_metadata":
        event = message.get("conversation_initiation_metadata_event") or {}
        return Metadata(
            str(event.get("conversation_id", "")),
            event.get("agent_output_audio_format"),
            event.get("user_input_audio_format"),
        )
    return _parse_turns(kind, message)


def _parse_turns(kind: str, message: dict[str, Any]) -> AgentEvent:
    """The conversation's text and tool messages (less frequent than audio, parsed after it)."""
    if kind == "user_transcript":
        event = _event(message, "user_transcription_event")
        return UserTranscript(_text(event.get("user_transcript")), _int(event.get("event_id")))
    if kind == "agent_response":
        event = _event(message, "agent_response_event")
        return AgentResponse(_text(event.get("agent_response")), _int(event.get("event_id")))
    if kind == "agent_response_correction":
        event = _event(message, "agent_response_correction_event")
        return AgentResponseCorrection(
            _text(event.get("original_agent_response")),
            _text(event.get("corrected_agent_response")),
            _int(event.get("event_id")),
        )
    if kind == "client_tool_call":
        event = _event(message, "client_tool_call")
        parameters = event.get("parameters")
        return ClientToolCall(
            str(event.get("tool_name", "")),
            str(event.get("tool_call_id", "")),
            parameters if isinstance(parameters, dict) else {},
            _int(event.get("event_id")),
        )
    if kind == "error":
        event = _event(message, "error_event")
        error_type = event.get("error_type")
        return AgentError(
            _int(event.get("code")),
            _text(event.get("message") or event.get("reason")),
            str(error_type) if error_type else None,
        )
    return Other(kind)


def initiation(client_data: dict[str, Any]) -> str:
    return json.dumps({"type": "conversation_initiation_client_data", **client_data})


def user_audio(payload: str, *, encoded_here: bool = False) -> str:
    # No "type" field: ElevenLabs recognises audio chunks by their key. Built around the one
    # escaped string, 50 times a second per call: the same text as json.dumps of the dict,
    # without walking a dict through the encoder. Base64 that callbridge encoded itself
    # (converted audio, ~900 characters of PCM 16000) is all A-Z a-z 0-9 + / =, which JSON
    # never escapes: it is quoted as it is, without a scan. Anything else (Twilio's payload,
    # passed on) goes through the escaper.
    # One f-string: the message is built in one allocation, not one per `+`.
    if encoded_here:
        return f'{{"user_audio_chunk": "{payload}"}}'
    return f'{{"user_audio_chunk": {_string(payload)}}}'


def pong(event_id: int) -> str:
    return json.dumps({"type": "pong", "event_id": event_id})


def client_tool_result(tool_call_id: str, result: str, *, is_error: bool) -> str:
    return json.dumps(
        {
            "type": "client_tool_result",
            "tool_call_id": tool_call_id,
            "result": result,
            "is_error": is_error,
        }
    )
