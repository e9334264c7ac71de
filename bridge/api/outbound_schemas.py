"""The ElevenLabs-compatible outbound campaigns API's schemas: bodies, answers and the
listings' query parameters."""

from __future__ import annotations

from typing import Any

from bridge.api.elevenlabs_shared import CLIENT_DATA
from bridge.api.openapi import Api
from campaigns import followups

api = Api(
    "elevenlabs-outbound-campaigns",
    "ElevenLabs-compatible outbound campaigns (the official elevenlabs SDK works unchanged). "
    "Authenticate with xi-api-key.",
)

# The report items that carry follow-ups; a policy that leaves one out reads the item of its name.
FOLLOW_UP_ITEMS = ("callback_time", "redirect_phone_number", "stop")
PREFIX = "/v1/convai/outbound-campaigns"
MAX_RECIPIENTS = 10_000
PAGE_QUERY = {
    "page_size": {"type": "integer", "minimum": 1, "maximum": 100, "default": 30},
    "cursor": {"type": "string", "maxLength": 64},
}


INTERVAL = {
    "type": "object",
    "required": ["start", "end"],
    "properties": {"start": {"type": "string"}, "end": {"type": "string"}},
}
PERIOD = {
    "type": "object",
    "required": ["weekdays", "intervals"],
    "properties": {
        "weekdays": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 6}},
        "intervals": {"type": "array", "items": INTERVAL},
    },
}
RETRY = {
    "type": ["object", "null"],
    "properties": {
        "retry_delay_seconds": {"type": ["integer", "null"], "minimum": 0, "maximum": 2592000},
        "max_short_retries": {"type": ["integer", "null"], "minimum": 0},
        "max_total_calls": {"type": ["integer", "null"], "minimum": 1, "maximum": 20},
        "max_callbacks": {"type": ["integer", "null"], "minimum": 0},
        "max_redirects": {"type": ["integer", "null"], "minimum": 0},
        "interval_placement": {"enum": ["start", "random", "rotate", None]},
        "rotate_step_seconds": {"type": ["integer", "null"], "minimum": 0},
        "max_consecutive_failures_per_number": {
            "type": ["integer", "null"],
            "minimum": 1,
            "maximum": 100,
        },
    },
}
POLICY_PROPERTIES: dict[str, Any] = {
    "timezone": {"type": ["string", "null"], "maxLength": 64},
    "retry": RETRY,
    "calling_periods": {"type": ["array", "null"], "items": PERIOD},
    "data_collection": {
        "type": ["object", "null"],
        "properties": {
            **{
                name: {"type": ["string", "null"], "minLength": 1, "maxLength": 200}
                for name in FOLLOW_UP_ITEMS
            },
            "mappings": {
                "type": ["object", "null"],
                "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 200},
            },
        },
    },
    "followup_context": {
        "type": ["object", "null"],
        "properties": {name: {"type": ["boolean", "null"]} for name in followups.CONTEXT},
    },
}
POLICY = api.schema("OutboundPolicy", {"type": ["object", "null"], "properties": POLICY_PROPERTIES})
MODE_CONFIG = {
    "type": ["object", "null"],
    "properties": {
        "ringing_timeout_secs": {"type": ["integer", "null"], "minimum": 5, "maximum": 600},
        "twilio_call_recording_enabled": {"type": ["boolean", "null"]},
        "twilio_machine_detection": {"type": ["object", "null"]},
    },
}
CHANNEL_CONFIG = {
    "type": "object",
    "required": ["channel"],
    "properties": {
        "channel": {"enum": ["phone", "whatsapp"]},
        "agent_phone_number_id": {"type": "string", "maxLength": 200},
        "mode_config": MODE_CONFIG,
    },
}
SUBMIT = api.schema(
    "OutboundCampaignSubmit",
    {
        "type": "object",
        "required": ["call_name", "agent_id", "recipients", "channel_config"],
        "properties": {
            "call_name": {"type": "string", "minLength": 1, "maxLength": 200},
            "agent_id": {"type": "string", "minLength": 1, "maxLength": 200},
            "recipients": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_RECIPIENTS,
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": ["string", "null"], "maxLength": 200},
                        "phone_number": {"type": ["string", "null"], "maxLength": 64},
                        "phone_numbers": {
                            "type": ["array", "null"],
                            "maxItems": 10,
                            "items": {"type": "string", "maxLength": 64},
                        },
                        "whatsapp_user_id": {"type": ["string", "null"]},
                        "conversation_initiation_client_data": CLIENT_DATA,
                    },
                },
            },
            "channel_config": CHANNEL_CONFIG,
            "scheduled_time_unix": {"type": ["integer", "null"], "minimum": 0},
            "timezone": {"type": ["string", "null"], "maxLength": 64},
            "branch_id": {"type": ["string", "null"]},
            "environment": {"type": ["string", "null"]},
            "target_concurrency_limit": {"type": ["integer", "null"], "minimum": 1},
            "idempotency_key": {"type": ["string", "null"], "minLength": 1, "maxLength": 200},
            "policy": POLICY,
            "variant": {"enum": ["simple", "advanced", None]},
        },
    },
)
STATUSES = ["active", "paused", "stopping", "stopped", "completed", "failed", "attention"]
CAMPAIGN = api.schema(
    "OutboundCampaign",
    {
        "type": "object",
        "required": [
            "campaign_id",
            "call_name",
            "agent_id",
            "channel_config",
            "status",
            "policy",
            "variant",
            "created_at_unix",
            "updated_at_unix",
            "channel",
            "mode",
            "counts",
            "agent_name",
        ],
        "properties": {
            "campaign_id": {"type": "string"},
            "call_name": {"type": "string"},
            "agent_id": {"type": "string"},
            "agent_name": {"type": "string"},
            "channel_config": {"type": "object"},
            "status": {"enum": STATUSES},
            "policy": {"type": "object"},
            "variant": {"enum": ["simple", "advanced"]},
            "source": {"enum": ["ui", "api"]},
            "created_at_unix": {"type": "integer"},
            "scheduled_time_unix": {"type": ["integer", "null"]},
            "updated_at_unix": {"type": "integer"},
            "target_concurrency_limit": {"type": ["integer", "null"]},
            "channel": {"enum": ["phone", "whatsapp"]},
            "mode": {"enum": ["voice", "message"]},
            "counts": {
                "type": "object",
                "required": ["leads", "terminal_leads", "open_attention"],
                "properties": {
                    "leads": {"type": "integer"},
                    "terminal_leads": {"type": "integer"},
                    "open_attention": {"type": "integer"},
                },
            },
        },
    },
)
SUBMITTED = api.schema(
    "OutboundCampaignSubmitted",
    {
        "type": "object",
        "required": ["campaign", "created", "within_calling_window"],
        "properties": {
            "campaign": CAMPAIGN,
            "created": {"type": "boolean"},
            "within_calling_window": {"type": "boolean"},
        },
    },
)


def _page(name: str, item: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [name, "has_more"],
        "properties": {
            name: {"type": "array", "items": item},
            "next_cursor": {"type": ["string", "null"]},
            "has_more": {"type": "boolean"},
        },
    }


CAMPAIGN_PAGE = api.schema("OutboundCampaignPage", _page("campaigns", CAMPAIGN))
LEAD = api.schema(
    "OutboundLead",
    {
        "type": "object",
        "required": [
            "lead_id",
            "phone_number",
            "phone_numbers_index",
            "user_id",
            "attempt_count",
            "failure_count",
            "callback_count",
            "redirect_count",
            "do_not_call",
            "updated_at_unix",
            "dynamic_variables",
            "overrides",
        ],
        "properties": {
            "lead_id": {"type": "string"},
            "recipient_id": {"type": ["string", "null"]},
            "phone_number": {"type": "string"},
            "phone_numbers": {"type": "array", "items": {"type": "string"}},
            "phone_numbers_index": {"type": "integer"},
            "user_id": {"type": "string"},
            "attempt_count": {"type": "integer"},
            "failure_count": {"type": "integer"},
            "callback_count": {"type": "integer"},
            "redirect_count": {"type": "integer"},
            "do_not_call": {"type": "boolean"},
            "terminal_disposition": {"type": ["string", "null"]},
            "created_at_unix": {"type": ["integer", "null"]},
            "updated_at_unix": {"type": "integer"},
            "dynamic_variables": {"type": "object"},
            "overrides": {"type": "object"},
        },
    },
)
LEAD_PAGE = api.schema("OutboundLeadPage", _page("leads", LEAD))
CALL = api.schema(
    "OutboundCall",
    {
        "type": "object",
        "required": [
            "intent_id",
            "lead_id",
            "intent_type",
            "status",
            "phone_number",
            "scheduled_time_unix",
        ],
        "properties": {
            "intent_id": {"type": "string"},
            "lead_id": {"type": "string"},
            "intent_type": {"enum": ["initial", "retry", "callback", "redirect"]},
            "cold_attempt": {"type": ["integer", "null"]},
            "status": {"enum": ["queued", "submitted", "completed", "cancelled", "attention"]},
            "phone_number": {"type": "string"},
            "scheduled_time_unix": {"type": "integer"},
            "conversation_id": {"type": ["string", "null"]},
            "outcome": {"type": ["string", "null"]},
            "call_result": {"type": ["string", "null"]},
            "outcome_at_unix": {"type": ["integer", "null"]},
            "decision_disposition": {"type": ["string", "null"]},
            # Beyond ElevenLabs: inbound when the person called the campaign's number back.
            "direction": {"enum": ["outbound", "inbound"]},
        },
    },
)
CALL_PAGE = api.schema("OutboundCallPage", _page("calls", CALL))
ATTENTION = api.schema(
    "OutboundAttention",
    {
        "type": "object",
        "required": [
            "attention_id",
            "campaign_id",
            "reason",
            "detail",
            "status",
            "retryable",
            "created_at_unix",
            "updated_at_unix",
        ],
        "properties": {
            "attention_id": {"type": "string"},
            "campaign_id": {"type": "string"},
            "reason": {"type": "string"},
            "detail": {"type": "string"},
            "status": {"enum": ["open", "resolved", "retrying"]},
            "retryable": {"type": "boolean"},
            "resolution": {"type": ["string", "null"]},
            "created_at_unix": {"type": "integer"},
            "updated_at_unix": {"type": "integer"},
        },
    },
)
ATTENTION_PAGE = api.schema("OutboundAttentionPage", _page("attention", ATTENTION))
CONFIG_BODY = {
    "type": "object",
    "properties": {
        "policy": POLICY,
        "agent_policies": {
            "type": ["object", "null"],
            "additionalProperties": {"type": "object", "properties": POLICY_PROPERTIES},
        },
        "whatsapp_voice_policy": {"type": ["object", "null"]},
    },
}
CONFIG = api.schema(
    "OutboundWorkspaceConfig",
    {
        "type": "object",
        "required": ["version", "config"],
        "properties": {"version": {"type": "integer"}, "config": CONFIG_BODY},
    },
)
