"""ElevenLabs conversation WebSocket wire format (client side): server events parsed, client
messages built. Audio stays base64 μ-law 8000 both ways, as a Twilio call needs it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _string
from typing import Any


@dataclass(frozen=True, slots=True)
class Metadata:
    conversation_id: str
    agent_output_audio_format: str | None = None
    user_input_audio_format: str | None = None


# Slotted: one of these per 20 ms frame, and no per-instance dict for the collector to track.
@dataclass(frozen=True, slots=True)
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
class Other:
    type: str


AgentEvent = Metadata | Audio | Interruption | Ping | Other


def _int(value: object, default: int = 0) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default


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
    return Other(kind)


def initiation(client_data: dict[str, Any]) -> str:
    return json.dumps({"type": "conversation_initiation_client_data", **client_data})


def user_audio(payload: str) -> str:
    # No "type" field: ElevenLabs recognises audio chunks by their key. Built around the one
    # escaped string, 50 times a second per call: the same text as json.dumps of the dict,
    # without walking a dict through the encoder.
    return '{"user_audio_chunk": ' + _string(payload) + "}"


def pong(event_id: int) -> str:
    return json.dumps({"type": "pong", "event_id": event_id})
