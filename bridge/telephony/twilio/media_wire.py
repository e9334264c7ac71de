"""Twilio Media Streams wire format: messages from Twilio parsed, messages to Twilio built.

Only the format lives here; moving the messages is the relay's business. Numbers arrive as
strings (Twilio's own convention) and audio stays base64 μ-law: the relay never decodes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _string
from typing import Any

from bridge.wire_values import whole_number


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str = "Call"


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    custom_parameters: dict[str, str] = field(default_factory=dict)
    media_format: dict[str, Any] = field(default_factory=dict)


# Slotted: one of these per 20 ms frame, and no per-instance dict for the collector to track.
# Not frozen: a frozen dataclass sets each field through object.__setattr__, twice the cost
# of building it (1.1 against 0.5 µs), 50 times a second per call; nothing changes it.
@dataclass(slots=True)
class Media:
    payload: str  # base64 μ-law 8000, passed on untouched
    track: str = "inbound"
    chunk: int | None = None
    timestamp: int | None = None


@dataclass(frozen=True, slots=True)
class Mark:
    name: str


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str


@dataclass(frozen=True, slots=True)
class Stop:
    call_sid: str | None = None


@dataclass(frozen=True, slots=True)
class Unknown:
    event: str


TwilioEvent = Connected | Start | Media | Mark | Dtmf | Stop | Unknown


def parse(text: str) -> TwilioEvent:
    """One message from Twilio. Raises ValueError when it is not a JSON object."""
    message = json.loads(text)
    if not isinstance(message, dict):
        raise ValueError("a Media Streams message is a JSON object")
    event = str(message.get("event", ""))
    if event == "media":
        media = message.get("media") or {}
        return Media(
            payload=str(media.get("payload", "")),
            track=str(media.get("track", "inbound")),
            chunk=whole_number(media.get("chunk")),
            timestamp=whole_number(media.get("timestamp")),
        )
    if event == "start":
        start = message.get("start") or {}
        params = start.get("customParameters") or {}
        return Start(
            stream_sid=str(message.get("streamSid") or start.get("streamSid") or ""),
            call_sid=str(start.get("callSid", "")),
            account_sid=str(start.get("accountSid", "")),
            custom_parameters={str(k): str(v) for k, v in params.items()},
            media_format=dict(start.get("mediaFormat") or {}),
        )
    if event == "connected":
        return Connected(str(message.get("protocol", "Call")))
    if event == "mark":
        return Mark(str((message.get("mark") or {}).get("name", "")))
    if event == "dtmf":
        return Dtmf(str((message.get("dtmf") or {}).get("digit", "")))
    if event == "stop":
        return Stop((message.get("stop") or {}).get("callSid"))
    return Unknown(event)


def media(stream_sid: str, payload: str) -> str:
    # Sent for every 20 ms agent frame: the same text json.dumps gives for the message, with
    # only its two strings going through the (C) escaper.
    return (
        '{"event": "media", "streamSid": '
        + _string(stream_sid)
        + ', "media": {"payload": '
        + _string(payload)
        + "}}"
    )


class MediaMessages:
    """The `media` messages of one stream, 50 a second: the text before the payload (with the
    stream's escaped sid) is built once. The same text as `media`."""

    def __init__(self, stream_sid: str) -> None:
        self._head = (
            '{"event": "media", "streamSid": ' + _string(stream_sid) + ', "media": {"payload": '
        )

    def __call__(self, payload: str, *, encoded_here: bool = False) -> str:
        # Base64 callbridge encoded itself (converted audio) holds nothing JSON escapes; an
        # agent's payload passed on as it came goes through the escaper. One f-string: the
        # message is built in one allocation, not one per `+`.
        if encoded_here:
            return f'{self._head}"{payload}"}}}}'
        return f"{self._head}{_string(payload)}}}}}"


def mark(stream_sid: str, name: str) -> str:
    # One follows every 100 ms of agent audio: built like `media`, the same text as json.dumps.
    return (
        '{"event": "mark", "streamSid": '
        + _string(stream_sid)
        + ', "mark": {"name": '
        + _string(name)
        + "}}"
    )


def clear(stream_sid: str) -> str:
    return json.dumps({"event": "clear", "streamSid": stream_sid})
