"""How the REST API shows campaigns, contacts and attempts: one renderer each, for every endpoint
that returns them (bridge/api, bridge/dashboard)."""

from __future__ import annotations

from typing import Any

from campaigns.clock import iso_z
from campaigns.models import Attempt, Campaign, Contact
from campaigns.phones import number_types_of
from campaigns.policy import parse_retry_rules, retry_rules_json


def campaign_json(campaign: Campaign, counts: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": campaign.id,
        "name": campaign.name,
        "status": campaign.status,
        "agent_id": campaign.agent_id,
        "from_number": campaign.from_number,
        "default_region": campaign.default_region,
        "max_attempts": campaign.max_attempts,
        "retry_delay_seconds": campaign.retry_delay_seconds,
        "concurrency": campaign.concurrency,
        "cps": campaign.cps,
        "machine_detection": campaign.machine_detection,
        "ring_timeout_seconds": campaign.ring_timeout_seconds,
        "time_limit_seconds": campaign.time_limit_seconds,
        "start_at": iso_z(campaign.start_at),
        "agent_connection": campaign.agent_connection,
        "agent_phone_number_id": campaign.agent_phone_number_id,
        "end_at": iso_z(campaign.end_at),
        "timezone": campaign.timezone,
        "calling_periods": campaign.calling_periods,
        "rule_set": campaign.rule_set,
        "retry_rules": retry_rules_json(
            parse_retry_rules(campaign.retry_rules, campaign.retry_delay_seconds)
        ),
        "max_attempts_per_day": campaign.max_attempts_per_day,
        "max_failures_per_number": campaign.max_failures_per_number,
        "voicemail_policy": campaign.voicemail_policy,
        "voicemail_message": campaign.voicemail_message,
        "schedule_cron": campaign.schedule_cron,
        "schedule_list": campaign.schedule_list,
        "allowed_number_types": sorted(number_types_of(campaign.allowed_number_types)),
        "created_at": iso_z(campaign.created_at),
        "started_at": iso_z(campaign.started_at),
        "completed_at": iso_z(campaign.completed_at),
    }
    if counts is not None:
        body["counts"] = counts
    return body


def contact_json(contact: Contact) -> dict[str, Any]:
    return {
        "id": contact.id,
        "campaign_id": contact.campaign_id,
        "external_id": contact.external_id,
        "phone_number": contact.phone_number,
        "state": contact.state,
        "disposition": contact.disposition,
        "attempts_made": contact.attempts_made,
        "next_attempt_at": iso_z(contact.next_attempt_at),
        "dynamic_variables": contact.dynamic_variables or {},
        "time_zones": list(contact.time_zones or []),
        "created_at": iso_z(contact.created_at),
        "finished_at": iso_z(contact.finished_at),
    }


# An attempt's parts the dashboard leaves out: whose it is, the provider's handle, the post-call
# report. The dashboard also shows a call's live transcript and tool calls as lists, never null.
_ATTEMPT_DETAIL = (
    "campaign_id",
    "contact_id",
    "provider",
    "provider_call_id",
    "voicemail_action",
    "call_successful",
    "conversation_seconds",
    "data_collection",
    "transcript",
)


def attempt_json(attempt: Attempt, *, detail: bool = True) -> dict[str, Any]:
    """An attempt as the REST API shows it; ``detail=False``: as the dashboard shows it."""
    body: dict[str, Any] = {
        "id": attempt.id,
        "campaign_id": attempt.campaign_id,
        "contact_id": attempt.contact_id,
        "number": attempt.number,
        "phone_number": attempt.phone_number,
        "provider": attempt.provider,
        # inbound: the contact called back.
        "direction": attempt.direction,
        "provider_call_id": attempt.provider_call_id,
        "status": attempt.status,
        "outcome": attempt.outcome,
        "answered_by": attempt.answered_by,
        "ring_seconds": attempt.ring_seconds,
        "talk_seconds": attempt.talk_seconds,
        "sip_response_code": attempt.sip_response_code,
        "error_code": attempt.error_code,
        "error_message": attempt.error_message,
        "voicemail_action": attempt.voicemail_action,
        "conversation_id": attempt.conversation_id,
        "transcript_summary": attempt.transcript_summary,
        "call_successful": attempt.call_successful,
        "conversation_seconds": attempt.conversation_seconds,
        "data_collection": attempt.data_collection,
        "transcript": attempt.transcript,
        # Kept while the call was live: [{role, message, time_in_call_secs, interrupted?}].
        "live_transcript": attempt.live_transcript,
        "tool_calls": attempt.tool_calls,
        "agent_error": attempt.agent_error,
        "created_at": iso_z(attempt.created_at),
        "dialed_at": iso_z(attempt.dialed_at),
        "answered_at": iso_z(attempt.answered_at),
        "ended_at": iso_z(attempt.ended_at),
    }
    if not detail:
        for name in _ATTEMPT_DETAIL:
            del body[name]
        body["live_transcript"] = attempt.live_transcript or []
        body["tool_calls"] = attempt.tool_calls or []
    return body
