"""ElevenLabs' native outbound call (`agent_connection` native): placed by ElevenLabs through
its own Twilio integration."""

from __future__ import annotations

from typing import Any

from bridge.telephony.elevenlabs.dialer import AgentPlacedDialer
from bridge.telephony.elevenlabs.outcomes import PROVIDER
from bridge.telephony.port import Connection, DialerParts
from campaigns.dialing import DialRequest
from campaigns.models import MachineDetection

MACHINE_DETECTION_MODES = {
    MachineDetection.UNTIL_GREETING_ENDS: "detect_message_end",
    MachineDetection.DETECT: "enable",
}


class ElevenLabsDialer(AgentPlacedDialer):
    """Places calls through ElevenLabs' Twilio integration (`agent_connection` native).

    ElevenLabs dials from the Twilio number imported into it, so the call also exists on that
    Twilio account: listing, fetching and hanging up go to the Twilio Dialer (the router sends
    them there, as it owns the call SID); this class only creates calls.
    """

    path = "/v1/convai/twilio/outbound-call"

    def telephony_config(self, request: DialRequest) -> dict[str, Any]:
        telephony = super().telephony_config(request)
        if request.record:
            telephony["twilio_call_recording_enabled"] = True
        mode = MACHINE_DETECTION_MODES.get(request.machine_detection or "")
        if mode:
            telephony["twilio_machine_detection"] = {"mode": mode}
        return telephony

    def call_id(self, answer: dict[str, Any]) -> str | None:
        call_sid = answer.get("callSid") or answer.get("call_sid")
        return str(call_sid) if call_sid else super().call_id(answer)


def _native(parts: DialerParts) -> ElevenLabsDialer:
    return ElevenLabsDialer(
        parts.agents,
        timeout_seconds=parts.settings.provider_timeout_seconds,
        on_conversation=parts.on_conversation,
    )


# Native calls send no Twilio callbacks to us: the post-call webhook ends them.
CONNECTIONS = (
    Connection(
        "native",
        # ElevenLabs places the call, on the Twilio number it was given.
        provider=PROVIDER,
        needs=("agent_id", "agent_phone_number_id"),
        ended_by_report=True,
        dialer=_native,
    ),
)
