"""Campaign routes: create, list, change, delete, contacts (CSV or JSON), start, calls, export."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bridge.api.bodies import spool_body
from bridge.api.errors import ApiError
from bridge.api.export import export_response
from bridge.api.openapi import PAGE_HEADERS, PAGE_QUERY, Api, Response, body_of, query_of, ref
from bridge.keys import SCHEDULER, SESSIONMAKER
from bridge.telephony.factory import agent_connections
from campaigns.clock import BadInstant, iso_z, parse_instant, utcnow
from campaigns.contact_list import ContactItem, add_contacts
from campaigns.editing import delete_draft, update_campaign
from campaigns.intake.contacts import import_contacts
from campaigns.intake.report import ImportReport
from campaigns.lifecycle import (
    CampaignSpec,
    campaign_counts,
    create_campaign,
    get_campaign,
    next_call_at,
    request_start,
)
from campaigns.models import Attempt, Campaign, CampaignStatus, Contact
from campaigns.phones import CHOOSABLE_NUMBER_TYPES, DEFAULT_NUMBER_TYPES, number_types_of
from campaigns.policy import parse_retry_rules, retry_rules_json

api = Api("campaigns", "Campaigns, their contacts and call attempts.")
routes = api.routes

MAX_UPLOAD_BYTES = 2 * 1024**3
# Uploads up to this size stay in memory; larger ones spill to a temporary file.
SPOOL_BYTES = 8 * 1024**2
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


def attempt_json(attempt: Attempt) -> dict[str, Any]:
    return {
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


def _spec_values(body: dict[str, Any]) -> dict[str, Any]:
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


def _spec_from(body: dict[str, Any]) -> CampaignSpec:
    values = _spec_values(body)
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


COUNTS = api.schema(
    "CampaignCounts",
    {
        "type": "object",
        "properties": {
            "contacts": {"type": "integer"},
            "pending": {"type": "integer"},
            "in_progress": {"type": "integer"},
            "attempts": {"type": "integer"},
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


async def page_of(
    session: AsyncSession,
    entity: Any,
    where: list[ColumnElement[bool]],
    order_by: tuple[Any, ...],
    render: Callable[[Any], dict[str, Any]],
    page: int,
    per_page: int,
) -> web.Response:
    """One page of ``entity`` rows matching ``where``, with the pagination headers."""
    total = await session.scalar(select(func.count()).select_from(entity).where(*where))
    rows = await session.scalars(
        select(entity)
        .where(*where)
        .order_by(*order_by)
        .offset((page - 1) * per_page)
        .limit(per_page)
    )
    return paged([render(row) for row in rows], total or 0, page, per_page)


def paged(body: list[Any], total: int, page: int, per_page: int) -> web.Response:
    response = web.json_response(body)
    response.headers.update(
        {"X-Total-Count": str(total), "X-Page": str(page), "X-Per-Page": str(per_page)}
    )
    return response


def _instant_query(query: dict[str, Any], name: str) -> datetime | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        return _parse_instant(raw, name)
    except ApiError as exc:
        raise ApiError(400, "bad_query", exc.message) from exc


async def list_attempts(request: web.Request, *conditions: ColumnElement[bool]) -> web.Response:
    """Attempts matching ``conditions`` and the request's filters, one page, oldest first."""
    query = query_of(request)
    page, per_page = query["page"], query["per_page"]
    where = list(conditions)
    if query.get("status"):
        where.append(Attempt.status == query["status"])
    if query.get("answered_by"):
        where.append(Attempt.answered_by == query["answered_by"])
    if (since := _instant_query(query, "since")) is not None:
        where.append(Attempt.created_at >= since)
    if (until := _instant_query(query, "until")) is not None:
        where.append(Attempt.created_at < until)
    async with request.app[SESSIONMAKER]() as session:
        order = (Attempt.created_at, Attempt.id)
        return await page_of(session, Attempt, where, order, attempt_json, page, per_page)


@api.post(
    "/api/v1/campaigns",
    summary="Create a campaign (status draft)",
    body=CAMPAIGN_CREATE,
    responses={201: CAMPAIGN},
)
async def create(request: web.Request) -> web.Response:
    spec = _spec_from(body_of(request))
    campaign = await create_campaign(
        request.app[SESSIONMAKER], spec, agent_connections(request.app)
    )
    return web.json_response(campaign_json(campaign), status=201)


@api.get(
    "/api/v1/campaigns",
    summary="List campaigns, newest first",
    query={
        "status": {"type": "string", "maxLength": 16},
        "agent_id": {"type": "string", "maxLength": 200},
        **PAGE_QUERY,
    },
    responses={
        200: Response({"type": "array", "items": CAMPAIGN}, headers=PAGE_HEADERS),
    },
)
async def list_campaigns(request: web.Request) -> web.Response:
    query = query_of(request)
    page, per_page = query["page"], query["per_page"]
    where = []
    if query.get("status"):
        where.append(Campaign.status == query["status"])
    if query.get("agent_id"):
        where.append(Campaign.agent_id == query["agent_id"])
    async with request.app[SESSIONMAKER]() as session:
        order = (Campaign.created_at.desc(), Campaign.id.desc())
        return await page_of(session, Campaign, where, order, campaign_json, page, per_page)


@api.get(
    "/api/v1/campaigns/{campaign_id}",
    summary="A campaign with its counts",
    responses={200: CAMPAIGN},
)
async def read(request: web.Request) -> web.Response:
    async with request.app[SESSIONMAKER]() as session:
        campaign = await get_campaign(session, request.match_info["campaign_id"])
        counts = await campaign_counts(session, campaign.id)
        upcoming = await next_call_at(session, campaign.id)
    return web.json_response({**campaign_json(campaign, counts), "next_call_at": iso_z(upcoming)})


@api.patch(
    "/api/v1/campaigns/{campaign_id}",
    summary="Change a draft or paused campaign's settings (409 otherwise)",
    body=CAMPAIGN_UPDATE,
    responses={200: CAMPAIGN},
)
async def update(request: web.Request) -> web.Response:
    changes = _spec_values(body_of(request))
    campaign = await update_campaign(
        request.app[SESSIONMAKER],
        request.match_info["campaign_id"],
        changes,
        agent_connections(request.app),
    )
    return web.json_response(campaign_json(campaign))


@api.delete(
    "/api/v1/campaigns/{campaign_id}",
    summary="Delete a draft campaign and its contacts (409 once started)",
    responses={204: Response(description="Deleted")},
)
async def delete(request: web.Request) -> web.Response:
    await delete_draft(request.app[SESSIONMAKER], request.match_info["campaign_id"])
    return web.Response(status=204)


@api.post(
    "/api/v1/campaigns/{campaign_id}/contacts",
    summary="Add contacts: a CSV file (text/csv) or a JSON list",
    description=(
        "CSV: the phone column is phone_number (or ?phone_column=), an id column becomes the "
        "external id, every other column a dynamic variable. JSON: {contacts: [{phone_number, "
        "id, dynamic_variables}]}. Either way the answer is the intake report."
    ),
    body=CONTACTS_JSON,
    other_bodies={"text/csv": {"type": "string"}},
    query={"phone_column": {"type": "string", "minLength": 1, "maxLength": 200}},
    responses={200: IMPORT_REPORT},
)
async def upload_contacts(request: web.Request) -> web.Response:
    sm = request.app[SESSIONMAKER]
    async with sm() as session:
        campaign = await get_campaign(session, request.match_info["campaign_id"])
    if campaign.status in (CampaignStatus.COMPLETED, CampaignStatus.CANCELLED):
        raise ApiError(409, "conflict", f"campaign is {campaign.status}: no contacts can be added")
    body = body_of(request)
    if body is not None:
        items = [
            ContactItem(
                phone_number=item["phone_number"],
                external_id=item.get("id") or None,
                dynamic_variables=item.get("dynamic_variables") or {},
            )
            for item in body["contacts"]
        ]
        report = await add_contacts(
            sm,
            campaign.id,
            items,
            default_region=campaign.default_region,
            number_types=number_types_of(campaign.allowed_number_types),
        )
    else:
        report = await _import_csv(request, campaign)
    return web.json_response(report.to_dict())


async def _import_csv(request: web.Request, campaign: Campaign) -> ImportReport:
    content_type = request.content_type
    if content_type not in (
        "text/csv",
        "application/csv",
        "text/plain",
        "application/octet-stream",
    ):
        raise ApiError(415, "unsupported_media_type", "send the contacts as text/csv or JSON")
    phone_column = query_of(request).get("phone_column", "phone_number")
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        # Read whole before the import starts: a body past the limit or cut short stores nothing.
        await spool_body(request, spool, MAX_UPLOAD_BYTES)
        spool.seek(0)
        return await import_contacts(
            request.app[SESSIONMAKER],
            campaign.id,
            spool,  # type: ignore[arg-type]
            default_region=campaign.default_region,
            phone_column=phone_column,
            next_attempt_at=utcnow(),
            number_types=number_types_of(campaign.allowed_number_types),
        )


@api.get(
    "/api/v1/campaigns/{campaign_id}/contacts",
    summary="List a campaign's contacts, filtered by state or disposition",
    query={
        "state": {"type": "string", "enum": ["pending", "in_progress", "done"]},
        "disposition": {"type": "string", "maxLength": 16},
        **PAGE_QUERY,
    },
    responses={200: Response({"type": "array", "items": CONTACT}, headers=PAGE_HEADERS)},
)
async def list_contacts(request: web.Request) -> web.Response:
    query = query_of(request)
    page, per_page = query["page"], query["per_page"]
    async with request.app[SESSIONMAKER]() as session:
        campaign = await get_campaign(session, request.match_info["campaign_id"])
        where = [Contact.campaign_id == campaign.id]
        if query.get("state"):
            where.append(Contact.state == query["state"])
        if query.get("disposition"):
            where.append(Contact.disposition == query["disposition"])
        order = (Contact.created_at, Contact.id)
        return await page_of(session, Contact, where, order, contact_json, page, per_page)


@api.get(
    "/api/v1/contacts/{contact_id}",
    summary="One contact with all its call attempts",
    responses={200: CONTACT},
)
async def read_contact(request: web.Request) -> web.Response:
    contact_id = request.match_info["contact_id"]
    async with request.app[SESSIONMAKER]() as session:
        contact = await session.get(Contact, contact_id)
        if contact is None:
            raise ApiError(404, "not_found", f"no contact {contact_id!r}")
        attempts = await session.scalars(
            select(Attempt).where(Attempt.contact_id == contact.id).order_by(Attempt.number)
        )
        body = contact_json(contact)
        body["attempts"] = [attempt_json(a) for a in attempts]
    return web.json_response(body)


@api.post(
    "/api/v1/campaigns/{campaign_id}/start",
    summary="Start a draft: running now, or scheduled when start_at is in the future",
    responses={200: CAMPAIGN},
)
async def start(request: web.Request) -> web.Response:
    campaign = await request_start(request.app[SESSIONMAKER], request.match_info["campaign_id"])
    if campaign.status == CampaignStatus.SCHEDULED:
        assert campaign.start_at is not None
        request.app[SCHEDULER].schedule_campaign_start(campaign.id, campaign.start_at)
    else:
        await request.app[SCHEDULER].schedule_recurring(campaign.id)
    return web.json_response(campaign_json(campaign))


@api.get(
    "/api/v1/campaigns/{campaign_id}/calls",
    summary="A campaign's call attempts, filtered by status, answered_by and time range",
    query=ATTEMPT_FILTERS,
    responses={200: Response({"type": "array", "items": ATTEMPT}, headers=PAGE_HEADERS)},
)
async def list_calls(request: web.Request) -> web.Response:
    async with request.app[SESSIONMAKER]() as session:
        campaign = await get_campaign(session, request.match_info["campaign_id"])
    return await list_attempts(request, Attempt.campaign_id == campaign.id)


@api.get(
    "/api/v1/attempts",
    summary="Call attempts of every campaign, filtered by campaign, status, answered_by, time",
    query={"campaign_id": {"type": "string", "maxLength": 32}, **ATTEMPT_FILTERS},
    responses={200: Response({"type": "array", "items": ATTEMPT}, headers=PAGE_HEADERS)},
)
async def list_all_attempts(request: web.Request) -> web.Response:
    campaign_id = query_of(request).get("campaign_id")
    conditions = [Attempt.campaign_id == campaign_id] if campaign_id else []
    return await list_attempts(request, *conditions)


@api.get(
    "/api/v1/campaigns/{campaign_id}/export.csv",
    summary="Every contact with its outcome, as CSV (streamed; formula cells neutralised)",
    responses={200: Response({"type": "string"}, content_type="text/csv")},
)
async def export_csv(request: web.Request) -> web.StreamResponse:
    sm = request.app[SESSIONMAKER]
    async with sm() as session:
        campaign = await get_campaign(session, request.match_info["campaign_id"])
    return await export_response(request, sm, campaign.id)
