"""What the agent side reports about a call, as CallUpdates for the state machine.

Post-call webhooks and our own failures to reach the agent end up here, so retries and
idempotency follow the same rules as Twilio's callbacks (campaigns.progress.record_event).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bridge.wire_values import whole_number
from campaigns.call_updates import CallUpdate
from campaigns.models import Answerer

PROVIDER = "elevenlabs"
AGENT_UNAVAILABLE = "agent_unavailable"
# call_initiation_failure reasons, in Twilio's CallStatus vocabulary.
FAILURE_STATUSES = {"busy": "busy", "no-answer": "no-answer", "no_answer": "no-answer"}
VOICEMAIL_TOOL = "voicemail_detection"
# The answered-by value of a call whose agent found a voicemail (its voicemail_detection tool):
# an answering machine, to the domain.
AGENT_VOICEMAIL = VOICEMAIL_TOOL


def agent_failure(
    *, call_sid: str, attempt_id: str | None, reason: str, received_at: datetime
) -> CallUpdate:
    """The call was answered but could not be connected to the agent: the attempt failed."""
    return CallUpdate(
        provider="callbridge",
        provider_call_id=call_sid,
        kind="agent_failure",
        received_at=received_at,
        raw={"reason": reason},
        attempt_id=attempt_id,
        status="failed",
        error_code=AGENT_UNAVAILABLE,
        error_message=reason[:500],
    )


def voicemail_detected(data: dict[str, Any]) -> bool:
    """The agent's voicemail_detection tool ran (or its termination reason says so)."""
    metadata = data.get("metadata") or {}
    reason = str(metadata.get("termination_reason") or "")
    if VOICEMAIL_TOOL in reason:
        return True
    for turn in data.get("transcript") or []:
        for call in (turn or {}).get("tool_calls") or []:
            if (call or {}).get("tool_name") == VOICEMAIL_TOOL:
                return True
    return False


def call_sid_of(envelope: dict[str, Any]) -> str | None:
    data = envelope.get("data") or {}
    metadata = data.get("metadata") or {}
    if envelope.get("type") == "call_initiation_failure":
        body = metadata.get("body") or {}
        sid = body.get("CallSid") or body.get("call_sid")
    else:
        sid = (metadata.get("phone_call") or {}).get("call_sid")
    return str(sid) if sid else None


# A dynamic variable naming the attempt, sent with calls whose placing cannot be confirmed by
# asking ElevenLabs (it lists conversations by agent, not by number): the post-call report then
# names its attempt even when the create's answer, and so the conversation id, was lost.
ATTEMPT_VARIABLE = "callbridge_attempt_id"


def attempt_of(envelope: dict[str, Any]) -> str | None:
    """The attempt a report names through ATTEMPT_VARIABLE (its client data), if any."""
    data = envelope.get("data") or {}
    client_data = data.get("conversation_initiation_client_data") or {}
    variables = client_data.get("dynamic_variables") if isinstance(client_data, dict) else None
    value = variables.get(ATTEMPT_VARIABLE) if isinstance(variables, dict) else None
    return value if isinstance(value, str) and value else None


def collected_values(collected: dict[str, Any]) -> dict[str, Any]:
    """A report's data collection results ({id: {data_collection_id, value, rationale}}) as
    {id: value}."""
    return {
        str(key): item.get("value") if isinstance(item, dict) else item
        for key, item in collected.items()
    }


def transcription(
    envelope: dict[str, Any],
    *,
    provider_call_id: str,
    attempt_id: str | None,
    ends_call: bool,
    received_at: datetime,
) -> CallUpdate:
    """A post_call_transcription. ``ends_call``: no Twilio callback will tell us the call ended
    (native calls), so the report itself completes the attempt."""
    data = envelope.get("data") or {}
    metadata = data.get("metadata") or {}
    analysis = data.get("analysis") or {}
    duration = whole_number(metadata.get("call_duration_secs"))
    collected = analysis.get("data_collection_results")
    transcript = data.get("transcript")
    return CallUpdate(
        provider=PROVIDER,
        provider_call_id=provider_call_id,
        kind="post_call_transcription",
        received_at=received_at,
        raw=envelope,
        attempt_id=attempt_id,
        status="completed" if ends_call else None,
        answered_by=AGENT_VOICEMAIL if voicemail_detected(data) else None,
        answerer=Answerer.MACHINE if voicemail_detected(data) else None,
        duration_seconds=duration if ends_call else None,
        conversation_id=str(data.get("conversation_id") or "") or None,
        transcript=transcript if isinstance(transcript, list) else None,
        transcript_summary=analysis.get("transcript_summary"),
        call_successful=analysis.get("call_successful"),
        data_collection=collected if isinstance(collected, dict) else None,
        conversation_seconds=duration,
    )


def initiation_failure(
    envelope: dict[str, Any],
    *,
    provider_call_id: str,
    attempt_id: str | None,
    received_at: datetime,
) -> CallUpdate:
    data = envelope.get("data") or {}
    reason = str(data.get("failure_reason") or "unknown")
    body = (data.get("metadata") or {}).get("body") or {}
    return CallUpdate(
        provider=PROVIDER,
        provider_call_id=provider_call_id,
        kind="call_initiation_failure",
        received_at=received_at,
        raw=envelope,
        attempt_id=attempt_id,
        status=FAILURE_STATUSES.get(reason, "failed"),
        sip_response_code=whole_number(body.get("SipResponseCode")),
        error_code=None if reason in FAILURE_STATUSES else f"initiation_{reason}"[:32],
        error_message=None if reason in FAILURE_STATUSES else f"call initiation failed: {reason}",
        conversation_id=str(data.get("conversation_id") or "") or None,
    )
