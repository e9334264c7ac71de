"""The campaign API's schemas, and the checks of a campaign's settings and of the listing queries
that a JSON schema cannot say (unknown fields, types, instants)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bridge.api.errors import ApiError
from bridge.api.openapi import PAGE_QUERY, Api, ref
from campaigns.clock import BadInstant, parse_instant
from campaigns.lifecycle import CampaignSpec
from campaigns.phones import CHOOSABLE_NUMBER_TYPES, DEFAULT_NUMBER_TYPES

api = Api("campaigns", "Campaigns, their contacts and call attempts.")

MAX_JSON_CONTACTS = 10_000

_SPEC_FIELDS: dict[str, tuple[type | tuple[type, ...], bool]] = {
    # name: (accepted JSON types, nullable)
    "name": (str, False),
    "agent_id": (str, True),
    "from_number": (str, True),
    "default_region": (str, False),
    "max_attempts": (int, False),
    "retry_delay_seconds": (int, False),
    "concurrency": (int, False),
    "cps": ((int, float), True),
    "machine_detection": (str, False),
    "ring_timeout_seconds": (int, False),
    "time_limit_seconds": (int, False),
    "start_at": (str, True),
    "agent_connection": (str, False),
    "agent_phone_number_id": (str, True),
    "end_at": (str, True),
    "timezone": (str, False),
    "calling_periods": (list, True),
    "rule_set": (str, True),
    "retry_rules": (dict, True),
    "max_attempts_per_day": (int, True),
    "max_failures_per_number": (int, False),
    "voicemail_policy": (str, False),
    "voicemail_message": (str, True),
    "schedule_cron": (str, True),
    "schedule_list": (str, True),
    "allowed_number_types": (list, True),
}


def spec_values(body: dict[str, Any]) -> dict[str, Any]:
    """The body's settings (already checked against the schema), times parsed."""
    unknown = sorted(set(body) - set(_SPEC_FIELDS))
    if unknown:
        raise ApiError(422, "unknown_fields", f"unknown fields: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, (types, nullable) in _SPEC_FIELDS.items():
        if name not in body:
            continue
        value = body[name]
        if value is None and nullable:
            values[name] = None
            continue
        # bool is an int in Python, never a valid count here.
        if isinstance(value, bool) or not isinstance(value, types):
            raise ApiError(422, "invalid_field", f"{name} has the wrong type", {"field": name})
        values[name] = value
    for instant in ("start_at", "end_at"):
        if values.get(instant) is not None:
            values[instant] = _parse_instant(values[instant], instant)
    return values


def spec_from(body: dict[str, Any]) -> CampaignSpec:
    values = spec_values(body)
    if "name" not in values:
        raise ApiError(422, "missing_field", "name is required", {"field": "name"})
    return CampaignSpec(**values)


def _parse_instant(raw: str, field: str) -> datetime:
    try:
        return parse_instant(raw)
    except BadInstant as exc:
        raise ApiError(422, "invalid_field", f"{field}: {exc}", {"field": field}) from exc


def _field_schema(types: type | tuple[type, ...], nullable: bool) -> dict[str, Any]:
    kinds = types if isinstance(types, tuple) else (types,)
    names = {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        list: "array",
        dict: "object",
    }
    json_types = sorted({names[t] for t in kinds if t in names})
    if json_types == ["integer", "number"]:
        json_types = ["number"]
    if nullable:
        json_types.append("null")
    schema: dict[str, Any] = {"type": json_types[0] if len(json_types) == 1 else json_types}
    return schema


# Limits of the columns behind the fields: checked before anything reaches the database.
_FIELD_LIMITS: dict[str, dict[str, Any]] = {
    "name": {"minLength": 1, "maxLength": 200},
    "agent_id": {"maxLength": 200},
    "from_number": {"maxLength": 32},
    "default_region": {"minLength": 2, "maxLength": 2},
    "start_at": {"format": "date-time"},
    "timezone": {"maxLength": 64},
    "end_at": {"format": "date-time"},
    "rule_set": {"maxLength": 32},
    "voicemail_policy": {"enum": ["hang_up", "leave_message", "agent"]},
    "voicemail_message": {"maxLength": 2000},
    "schedule_cron": {"maxLength": 100},
    "schedule_list": {"maxLength": 100},
    "max_attempts_per_day": {"minimum": 1, "maximum": 50},
    "max_failures_per_number": {"minimum": 1, "maximum": 20},
    "calling_periods": {
        "minItems": 1,
        "items": {
            "type": "object",
            "required": ["weekdays", "start", "end"],
            "properties": {
                "weekdays": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "integer", "minimum": 0, "maximum": 6},
                },
                "start": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"},
                "end": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"},
            },
        },
    },
    "agent_phone_number_id": {"maxLength": 200},
    "allowed_number_types": {
        "description": (
            "The number types the campaign calls; null: "
            + ", ".join(sorted(DEFAULT_NUMBER_TYPES))
            + ". Premium-rate numbers are never called."
        ),
        "minItems": 1,
        "uniqueItems": True,
        "items": {"type": "string", "enum": sorted(CHOOSABLE_NUMBER_TYPES)},
    },
}


def _settings_schema(required: tuple[str, ...]) -> dict[str, Any]:
    properties = {
        name: {**_field_schema(types, nullable), **_FIELD_LIMITS.get(name, {})}
        for name, (types, nullable) in _SPEC_FIELDS.items()
    }
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def instant_query(query: dict[str, Any], name: str) -> datetime | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        return _parse_instant(raw, name)
    except ApiError as exc:
        raise ApiError(400, "bad_query", exc.message) from exc


COUNTS = api.schema(
    "CampaignCounts",
    {
        "type": "object",
        "properties": {
            "contacts": {"type": "integer"},
            "pending": {"type": "integer"},
            "in_progress": {"type": "integer"},
            "attempts": {
                "type": "integer",
                "description": "Dials made (its contacts' attempts; call-backs not counted)",
            },
            "dispositions": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
    },
)
CAMPAIGN = api.schema(
    "Campaign",
    {
        "type": "object",
        "required": ["id", "name", "status", "created_at"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "status": {
                "type": "string",
                "enum": ["draft", "scheduled", "running", "paused", "completed", "cancelled"],
            },
            "agent_id": {"type": ["string", "null"]},
            "from_number": {"type": ["string", "null"]},
            "default_region": {"type": "string"},
            "max_attempts": {"type": "integer"},
            "retry_delay_seconds": {"type": "integer"},
            "concurrency": {"type": "integer"},
            "cps": {"type": ["number", "null"]},
            "start_at": {"type": ["string", "null"], "format": "date-time"},
            "end_at": {"type": ["string", "null"], "format": "date-time"},
            "timezone": {"type": "string"},
            "calling_periods": {"type": ["array", "null"]},
            "rule_set": {"type": ["string", "null"]},
            "retry_rules": {"type": "object"},
            "max_attempts_per_day": {"type": ["integer", "null"]},
            "max_failures_per_number": {"type": "integer"},
            "voicemail_policy": {"type": "string"},
            "voicemail_message": {"type": ["string", "null"]},
            "schedule_cron": {"type": ["string", "null"]},
            "schedule_list": {"type": ["string", "null"]},
            "allowed_number_types": {"type": "array", "items": {"type": "string"}},
            "next_call_at": {"type": ["string", "null"], "format": "date-time"},
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": {"type": ["string", "null"], "format": "date-time"},
            "completed_at": {"type": ["string", "null"], "format": "date-time"},
            "counts": COUNTS,
        },
    },
)
CAMPAIGN_CREATE = api.schema("CampaignCreate", _settings_schema(("name",)))
CAMPAIGN_UPDATE = api.schema("CampaignUpdate", _settings_schema(()))
ATTEMPT = api.schema(
    "Attempt",
    {
        "type": "object",
        "required": ["id", "campaign_id", "contact_id", "number", "status"],
        "properties": {
            "id": {"type": "string"},
            "campaign_id": {"type": "string"},
            "contact_id": {"type": "string"},
            "number": {"type": "integer"},
            "phone_number": {"type": "string"},
            "direction": {"type": "string", "enum": ["outbound", "inbound"]},
            "status": {"type": "string"},
            "outcome": {"type": ["string", "null"]},
            "answered_by": {"type": ["string", "null"]},
            "voicemail_action": {"type": ["string", "null"]},
            "provider_call_id": {"type": ["string", "null"]},
            "created_at": {"type": ["string", "null"], "format": "date-time"},
            "ended_at": {"type": ["string", "null"], "format": "date-time"},
        },
    },
)
CONTACT = api.schema(
    "Contact",
    {
        "type": "object",
        "required": ["id", "campaign_id", "phone_number", "state", "attempts_made"],
        "properties": {
            "id": {"type": "string"},
            "campaign_id": {"type": "string"},
            "external_id": {"type": ["string", "null"]},
            "phone_number": {"type": "string"},
            "state": {"type": "string"},
            "disposition": {"type": ["string", "null"]},
            "attempts_made": {"type": "integer"},
            "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
            "dynamic_variables": {"type": "object"},
            "time_zones": {"type": "array", "items": {"type": "string"}},
            "created_at": {"type": ["string", "null"], "format": "date-time"},
            "finished_at": {"type": ["string", "null"], "format": "date-time"},
            "attempts": {"type": "array", "items": ref("Attempt")},
        },
    },
)
VARIABLE_VALUE = {"type": ["string", "number", "boolean"]}
CONTACTS_JSON = api.schema(
    "ContactsAdd",
    {
        "type": "object",
        "required": ["contacts"],
        "additionalProperties": False,
        "properties": {
            "contacts": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_JSON_CONTACTS,
                "items": {
                    "type": "object",
                    "required": ["phone_number"],
                    "additionalProperties": False,
                    "properties": {
                        "phone_number": {"type": "string", "maxLength": 64},
                        "id": {"type": ["string", "null"], "maxLength": 200},
                        "dynamic_variables": {
                            "type": "object",
                            "additionalProperties": VARIABLE_VALUE,
                        },
                    },
                },
            }
        },
    },
)
IMPORT_REPORT = api.schema(
    "ImportReport",
    {
        "type": "object",
        "required": ["rows", "accepted", "rejected", "errors"],
        "properties": {
            "rows": {"type": "integer"},
            "accepted": {"type": "integer"},
            "rejected": {"type": "integer"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["row", "value", "reason"],
                    "properties": {
                        "row": {"type": "integer"},
                        "value": {"type": "string"},
                        "reason": {"type": "string"},
                        "number_type": {
                            "type": "string",
                            "description": "with reason number_type_not_allowed",
                        },
                    },
                },
            },
        },
    },
)
TIME_QUERY = {"type": "string", "format": "date-time"}
ATTEMPT_FILTERS: dict[str, Any] = {
    "status": {"type": "string", "maxLength": 32},
    "answered_by": {"type": "string", "maxLength": 32},
    "since": TIME_QUERY,
    "until": TIME_QUERY,
    **PAGE_QUERY,
}
