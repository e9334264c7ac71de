"""ElevenLabs-compatible batch calling and outbound calls, so the official SDK works against us:
``ElevenLabs(api_key=KEY, base_url="http://host:port").conversational_ai.batch_calls.create(...)``.

A batch is a campaign (its id is the campaign id); each recipient is a contact, whose dynamic
variables come from ``conversation_initiation_client_data.dynamic_variables``. As on ElevenLabs,
each recipient is called once: busy and unanswered recipients end as ``failed``. Beyond the
ElevenLabs fields a submit may carry callbridge's own ``max_attempts``, ``retry_delay_seconds``
and ``from_number``; with either retry field the batch retries as a campaign does.
``outbound-call`` queues one call (campaigns/single_calls.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from sqlalchemy import delete as sa_delete
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bridge.api.elevenlabs_shared import (
    CLIENT_DATA,
    MACHINE_DETECTION_MODES,
    agent_options,
    client_variables,
    create_and_start,
    default_caller_id,
    e164_or_none,
    recipient_error,
    recording_option,
    unix_seconds,
)
from bridge.api.errors import ApiError
from bridge.api.export import export_response
from bridge.api.openapi import Api, Response, body_of, query_of
from bridge.api.paging import cursor_page, older_than
from bridge.app_keys import (
    AGENT_CONNECTOR,
    MEDIA_TOKEN_SECRET,
    READ_SESSIONMAKER,
    SESSIONMAKER,
    SETTINGS,
)
from bridge.media import tokens
from bridge.media.connector import load_context
from bridge.media.routes import stream_url
from bridge.telephony import twilio
from bridge.telephony.twilio import markup
from campaigns.api_tables import BatchCall
from campaigns.batches import BATCH_STATUS, batch_counts, recipients, retry_batch, touch
from campaigns.clock import BadInstant, from_unix
from campaigns.contact_list import (
    ContactItem,
    parse_items,
)
from campaigns.ids import new_id
from campaigns.lifecycle import (
    CampaignError,
    CampaignSpec,
    cancel,
    get_campaign,
)
from campaigns.models import Attempt, Campaign, CampaignStatus
from campaigns.phones import (
    CHOOSABLE_NUMBER_TYPES,
    number_types_of,
)
from campaigns.single_calls import place_single_call, register_call

api = Api(
    "elevenlabs-batch-calling",
    "ElevenLabs-compatible endpoints (the official elevenlabs SDK works unchanged): batch "
    "calling and Twilio outbound calls. Authenticate with xi-api-key.",
)
routes = api.routes

MAX_RECIPIENTS = 10_000
# How long outbound-call waits for the provider's call id before answering without it.
OUTBOUND_WAIT_SECONDS = 10.0

MACHINE_DETECTION = {
    "type": ["object", "null"],
    "properties": {"mode": {"enum": ["enable", "detect_message_end", None]}},
}
TELEPHONY = api.schema(
    "TelephonyCallConfig",
    {
        "type": ["object", "null"],
        "properties": {
            "ringing_timeout_secs": {"type": ["integer", "null"], "minimum": 5, "maximum": 600},
            "twilio_call_recording_enabled": {"type": ["boolean", "null"]},
            "twilio_machine_detection": MACHINE_DETECTION,
        },
    },
)
SUBMIT = api.schema(
    "BatchCallSubmit",
    {
        "type": "object",
        "required": ["call_name", "agent_id", "recipients"],
        "properties": {
            "call_name": {"type": "string", "minLength": 1, "maxLength": 200},
            "agent_id": {"type": "string", "minLength": 1, "maxLength": 200},
            "recipients": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_RECIPIENTS,
                "items": {
                    "type": "object",
                    "required": ["phone_number"],
                    "properties": {
                        "id": {"type": ["string", "null"], "maxLength": 200},
                        "phone_number": {"type": "string", "maxLength": 64},
                        "conversation_initiation_client_data": CLIENT_DATA,
                    },
                },
            },
            "scheduled_time_unix": {"type": ["integer", "null"], "minimum": 0},
            "agent_phone_number_id": {"type": ["string", "null"], "maxLength": 200},
            "timezone": {"type": ["string", "null"], "maxLength": 64},
            "target_concurrency_limit": {
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": 10000,
            },
            "telephony_call_config": TELEPHONY,
            "max_attempts": {"type": ["integer", "null"], "minimum": 1, "maximum": 20},
            "retry_delay_seconds": {"type": ["integer", "null"], "minimum": 0, "maximum": 2592000},
            "from_number": {"type": ["string", "null"], "maxLength": 32},
            "allowed_number_types": {
                "type": ["array", "null"],
                "description": "callbridge's own: the number types the batch calls (as a campaign)",
                "minItems": 1,
                "uniqueItems": True,
                "items": {"type": "string", "enum": sorted(CHOOSABLE_NUMBER_TYPES)},
            },
        },
    },
)
STATUS = {"enum": ["pending", "in_progress", "completed", "failed", "cancelled"]}
BATCH_PROPERTIES: dict[str, Any] = {
    "id": {"type": "string"},
    "name": {"type": "string"},
    "agent_id": {"type": "string"},
    "agent_name": {"type": "string"},
    "phone_number_id": {"type": ["string", "null"]},
    "phone_provider": {"type": ["string", "null"]},
    "created_at_unix": {"type": "integer"},
    "scheduled_time_unix": {"type": "integer"},
    "timezone": {"type": ["string", "null"]},
    "total_calls_dispatched": {"type": "integer"},
    "total_calls_scheduled": {"type": "integer"},
    "total_calls_finished": {"type": "integer"},
    "last_updated_at_unix": {"type": "integer"},
    "status": STATUS,
    "retry_count": {"type": "integer"},
    "target_concurrency_limit": {"type": ["integer", "null"]},
    "telephony_call_config": {"type": "object"},
}
BATCH_REQUIRED = [
    "id",
    "name",
    "agent_id",
    "agent_name",
    "created_at_unix",
    "scheduled_time_unix",
    "total_calls_dispatched",
    "total_calls_scheduled",
    "total_calls_finished",
    "last_updated_at_unix",
    "status",
    "retry_count",
    "telephony_call_config",
]
BATCH = api.schema(
    "BatchCallResponse",
    {"type": "object", "required": BATCH_REQUIRED, "properties": BATCH_PROPERTIES},
)
RECIPIENT = api.schema(
    "BatchCallRecipient",
    {
        "type": "object",
        "required": ["id", "status", "created_at_unix", "updated_at_unix"],
        "properties": {
            "id": {"type": "string"},
            "phone_number": {"type": ["string", "null"]},
            "status": {
                "enum": [
                    "pending",
                    "dispatched",
                    "initiated",
                    "in_progress",
                    "completed",
                    "failed",
                    "cancelled",
                    "voicemail",
                ]
            },
            "created_at_unix": {"type": "integer"},
            "updated_at_unix": {"type": "integer"},
            "conversation_id": {"type": ["string", "null"]},
            "conversation_initiation_client_data": {"type": ["object", "null"]},
        },
    },
)
BATCH_DETAILED = api.schema(
    "BatchCallDetailedResponse",
    {
        "type": "object",
        "required": [*BATCH_REQUIRED, "recipients"],
        "properties": {
            **BATCH_PROPERTIES,
            "recipients": {"type": "array", "items": RECIPIENT},
        },
    },
)
WORKSPACE = api.schema(
    "WorkspaceBatchCallsResponse",
    {
        "type": "object",
        "required": ["batch_calls"],
        "properties": {
            "batch_calls": {"type": "array", "items": BATCH},
            "next_doc": {"type": ["string", "null"]},
            "has_more": {"type": "boolean"},
        },
    },
)
OUTBOUND = api.schema(
    "TwilioOutboundCall",
    {
        "type": "object",
        "required": ["agent_id", "agent_phone_number_id", "to_number"],
        "properties": {
            "agent_id": {"type": "string", "minLength": 1, "maxLength": 200},
            "agent_phone_number_id": {"type": "string", "maxLength": 200},
            "to_number": {"type": "string", "maxLength": 64},
            "conversation_initiation_client_data": CLIENT_DATA,
            "call_recording_enabled": {"type": ["boolean", "null"]},
            "telephony_call_config": TELEPHONY,
        },
    },
)
OUTBOUND_RESPONSE = api.schema(
    "TwilioOutboundCallResponse",
    {
        "type": "object",
        "required": ["success", "message"],
        "properties": {
            "success": {"type": "boolean"},
            "message": {"type": "string"},
            "conversation_id": {"type": ["string", "null"]},
            "callSid": {"type": ["string", "null"]},
            "contact_id": {"type": "string"},
        },
    },
)


def _call_options(body: dict[str, Any]) -> dict[str, Any]:
    """outbound-call's telephony_call_config and call_recording_enabled as the contact's own
    call settings (its default campaign's stay for what the request leaves out)."""
    config = body.get("telephony_call_config")
    options = recording_option(config, body.get("call_recording_enabled"))
    if config is None:
        return options
    if config.get("ringing_timeout_secs"):
        options["ring_timeout_seconds"] = config["ringing_timeout_secs"]
    # As on ElevenLabs, a call config without twilio_machine_detection has no detection.
    mode = (config.get("twilio_machine_detection") or {}).get("mode")
    options["machine_detection"] = MACHINE_DETECTION_MODES.get(mode or "", "")
    return options


async def batch_json(session: Any, campaign: Campaign, default_phone: str) -> dict[str, Any]:
    counts = await batch_counts(session, campaign.id)
    batch = await session.get(BatchCall, campaign.id)
    config = dict((batch.telephony_call_config if batch else None) or {})
    config.setdefault("ringing_timeout_secs", campaign.ring_timeout_seconds)
    updated = max(
        value
        for value in (
            campaign.created_at,
            campaign.started_at,
            campaign.completed_at,
            batch.updated_at if batch else None,
            counts.last_finished_at,
        )
        if value is not None
    )
    return {
        "id": campaign.id,
        "name": campaign.name,
        "agent_id": campaign.agent_id or "",
        "agent_name": campaign.agent_id or "",
        "phone_number_id": campaign.agent_phone_number_id or campaign.from_number or default_phone,
        "phone_provider": "twilio",
        "created_at_unix": unix_seconds(campaign.created_at),
        "scheduled_time_unix": unix_seconds(
            campaign.start_at or campaign.started_at or campaign.created_at
        ),
        "timezone": getattr(campaign, "timezone", None),
        "total_calls_dispatched": counts.dispatched,
        "total_calls_scheduled": counts.scheduled,
        "total_calls_finished": counts.finished,
        "last_updated_at_unix": unix_seconds(updated),
        "status": BATCH_STATUS.get(campaign.status, "pending"),
        "retry_count": batch.retry_count if batch else 0,
        "target_concurrency_limit": campaign.concurrency,
        "telephony_call_config": config,
    }


async def _campaign(session: Any, request: web.Request) -> Campaign:
    """The batch the path names; campaigns that were not submitted as batches are not batches."""
    batch_id = request.match_info["batch_id"]
    try:
        campaign = await get_campaign(session, batch_id)
    except CampaignError as exc:
        raise ApiError(404, "not_found", f"no batch call {batch_id!r}") from exc
    if await session.get(BatchCall, campaign.id) is None:
        raise ApiError(404, "not_found", f"no batch call {batch_id!r}")
    return campaign


def _spec(body: dict[str, Any]) -> CampaignSpec:
    values: dict[str, Any] = {
        "name": body["call_name"].strip() or "batch",
        "agent_id": body["agent_id"],
    }
    if body.get("target_concurrency_limit"):
        values["concurrency"] = body["target_concurrency_limit"]
    for name in ("max_attempts", "retry_delay_seconds", "allowed_number_types"):
        if body.get(name) is not None:
            values[name] = body[name]
    if body.get("max_attempts") is None and body.get("retry_delay_seconds") is None:
        # ElevenLabs calls each recipient once; callbridge's retries are asked for explicitly.
        values["max_attempts"] = 1
    values["from_number"] = body.get("from_number") or e164_or_none(
        body.get("agent_phone_number_id")
    )
    config = body.get("telephony_call_config") or {}
    if config.get("ringing_timeout_secs"):
        values["ring_timeout_seconds"] = config["ringing_timeout_secs"]
    mode = (config.get("twilio_machine_detection") or {}).get("mode")
    if mode:
        values["machine_detection"] = {"enable": "Enable"}.get(mode, "DetectMessageEnd")
    scheduled = body.get("scheduled_time_unix")
    if scheduled and scheduled > time.time():
        try:
            values["start_at"] = from_unix(scheduled)
        except BadInstant as exc:
            raise ApiError(
                422,
                "invalid_field",
                f"scheduled_time_unix: {exc}",
                {"field": "scheduled_time_unix"},
            ) from exc
    names = {f.name for f in dataclasses.fields(CampaignSpec)}
    if body.get("timezone") and "timezone" in names:
        values["timezone"] = body["timezone"]
    if body.get("agent_phone_number_id") and "agent_phone_number_id" in names:
        values["agent_phone_number_id"] = body["agent_phone_number_id"]
    return CampaignSpec(**values)


@api.post(
    "/v1/convai/batch-calling/submit",
    summary="Submit a batch call (a campaign, started at once or at scheduled_time_unix)",
    body=SUBMIT,
    responses={200: BATCH},
)
async def submit(request: web.Request) -> web.Response:
    body = body_of(request)
    sm = request.app[SESSIONMAKER]
    items = [
        ContactItem(
            phone_number=r["phone_number"],
            # The recipient's id as the caller knows it; ElevenLabs makes one up when none is
            # given, and so do we (the contact's own ct_ id stays inside callbridge).
            external_id=r.get("id") or new_id("rcpt"),
            dynamic_variables=client_variables(r.get("conversation_initiation_client_data")),
        )
        for r in body["recipients"]
    ]
    parsed = parse_items(items, "US", number_types_of(body.get("allowed_number_types")))
    if parsed.errors:
        raise ApiError(
            422,
            "invalid_recipients",
            f"{len(parsed.errors)} recipient(s) cannot be called; nothing was created",
            [recipient_error(error) for error in parsed.errors],
        )
    config = body.get("telephony_call_config")

    async def write(session: AsyncSession, campaign_id: str) -> None:
        await touch(session, campaign_id, telephony_call_config=config)

    campaign = await create_and_start(
        request, _spec(body), parsed, body["recipients"], recording_option(config), write
    )
    async with sm() as session:
        return web.json_response(await batch_json(session, campaign, default_caller_id(request)))


@api.get(
    "/v1/convai/batch-calling/workspace",
    summary="List batch calls, newest first (cursor: last_doc)",
    query={
        "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 100},
        "last_doc": {"type": "string", "maxLength": 64},
        "agent_id": {"type": "string", "maxLength": 200},
    },
    responses={200: WORKSPACE},
)
async def workspace(request: web.Request) -> web.Response:
    query = query_of(request)
    limit = query["limit"]
    async with request.app[READ_SESSIONMAKER]() as session:
        # Only submitted batches (they have a batch_calls row), and not one whose submit is
        # still being written (a draft): single calls and /api/v1 campaigns are not batches.
        statement = select(Campaign).join(BatchCall, BatchCall.campaign_id == Campaign.id)
        statement = statement.where(Campaign.status != CampaignStatus.DRAFT)
        if query.get("agent_id"):
            statement = statement.where(Campaign.agent_id == query["agent_id"])
        if query.get("last_doc"):
            after = await session.get(Campaign, query["last_doc"])
            if after is None or await session.get(BatchCall, after.id) is None:
                raise ApiError(
                    400, "bad_query", "last_doc names no batch call", {"query": "last_doc"}
                )
            statement = statement.where(older_than(Campaign.created_at, Campaign.id, after))
        newest_first = (Campaign.created_at.desc(), Campaign.id.desc())
        campaigns, has_more = cursor_page(
            list(await session.scalars(statement.order_by(*newest_first).limit(limit + 1))), limit
        )
        batches = [await batch_json(session, c, default_caller_id(request)) for c in campaigns]
    return web.json_response(
        {
            "batch_calls": batches,
            "next_doc": campaigns[-1].id if has_more else None,
            "has_more": has_more,
        }
    )


@api.get(
    "/v1/convai/batch-calling/{batch_id}",
    summary="A batch call with every recipient's status",
    responses={200: BATCH_DETAILED},
)
async def read(request: web.Request) -> web.Response:
    async with request.app[READ_SESSIONMAKER]() as session:
        campaign = await _campaign(session, request)
        body = await batch_json(session, campaign, default_caller_id(request))
        body["recipients"] = [
            {
                "id": contact.external_id or contact.id,
                "phone_number": contact.phone_number,
                "status": status,
                "created_at_unix": unix_seconds(contact.created_at),
                "updated_at_unix": unix_seconds(
                    contact.finished_at
                    or (attempt and (attempt.ended_at or attempt.dialed_at or attempt.created_at))
                    or contact.created_at
                ),
                "conversation_id": attempt.conversation_id if attempt else None,
                "conversation_initiation_client_data": {
                    "dynamic_variables": dict(contact.dynamic_variables or {})
                },
            }
            for contact, status, attempt in await recipients(session, campaign.id)
        ]
    return web.json_response(body)


@api.delete(
    "/v1/convai/batch-calling/{batch_id}",
    summary="Delete a batch call that is not running, with its recipients and calls",
    responses={204: Response(description="Deleted")},
)
async def remove(request: web.Request) -> web.Response:
    sm = request.app[SESSIONMAKER]
    async with sm.begin() as session:
        campaign = await _campaign(session, request)
        await session.refresh(campaign, with_for_update=True)
        if campaign.status in (
            CampaignStatus.RUNNING,
            CampaignStatus.PAUSED,
            CampaignStatus.SCHEDULED,
        ):
            raise ApiError(409, "conflict", "the batch is still running: cancel it first")
        # The database cascades to contacts, attempts and batch metadata.
        await session.execute(sa_delete(Campaign).where(Campaign.id == campaign.id))
    return web.Response(status=204)


@api.post(
    "/v1/convai/batch-calling/{batch_id}/cancel",
    summary="Cancel a batch: recipients not yet called become cancelled; live calls finish",
    responses={200: BATCH},
)
async def cancel_batch(request: web.Request) -> web.Response:
    async def cancel_and_touch(sm: Any, batch_id: str) -> Campaign:
        campaign, _live = await cancel(sm, batch_id)
        async with sm.begin() as session:
            await touch(session, campaign.id)
        return campaign

    return await _change(request, cancel_and_touch)


@api.post(
    "/v1/convai/batch-calling/{batch_id}/retry",
    summary="Call the failed, busy and unanswered recipients of a finished batch again",
    responses={200: BATCH},
)
async def retry(request: web.Request) -> web.Response:
    async def reopen(sm: Any, batch_id: str) -> Campaign:
        campaign, _reopened = await retry_batch(sm, batch_id)
        return campaign

    return await _change(request, reopen)


async def _change(
    request: web.Request, action: Callable[[Any, str], Awaitable[Campaign]]
) -> web.Response:
    """Apply ``action`` to the batch the path names, answering with the batch as it is then."""
    sm = request.app[SESSIONMAKER]
    async with sm() as session:
        await _campaign(session, request)
    campaign = await action(sm, request.match_info["batch_id"])
    async with sm() as session:
        return web.json_response(await batch_json(session, campaign, default_caller_id(request)))


@api.get(
    "/v1/convai/batch-calling/{batch_id}/export",
    summary="Every recipient with its outcome, as CSV (streamed; formula cells neutralised)",
    responses={200: Response({"type": "string"}, content_type="text/csv")},
)
async def export(request: web.Request) -> web.StreamResponse:
    sm = request.app[SESSIONMAKER]
    async with sm() as session:
        campaign = await _campaign(session, request)
    return await export_response(request, sm, campaign.id)


@api.post(
    "/v1/convai/twilio/outbound-call",
    summary="Call one number now (a single call in the agent's default campaign)",
    description=(
        "Answers once the carrier has the call (callSid), or after a few seconds with the call "
        "still queued (callSid null). agent_phone_number_id is used as the caller id when it "
        "is an E.164 number."
    ),
    body=OUTBOUND,
    responses={200: OUTBOUND_RESPONSE},
)
async def outbound_call(request: web.Request) -> web.Response:
    body = body_of(request)
    sm = request.app[SESSIONMAKER]
    options = agent_options(body.get("conversation_initiation_client_data"), _call_options(body))
    contact, _created = await place_single_call(
        sm,
        to=body["to_number"],
        agent_id=body["agent_id"],
        from_number=e164_or_none(body.get("agent_phone_number_id")),
        dynamic_variables=client_variables(body.get("conversation_initiation_client_data")),
        agent_override=options.agent_override,
        user_id=options.user_id,
        call_options=options.call_options,
    )
    attempt = await _first_dial(sm, contact.id)
    return web.json_response(
        {
            "success": True,
            "message": "call placed" if attempt and attempt.provider_call_id else "call queued",
            "conversation_id": attempt.conversation_id if attempt else None,
            "callSid": attempt.provider_call_id if attempt else None,
            "contact_id": contact.id,
        }
    )


REGISTER = api.schema(
    "TwilioRegisterCall",
    {
        "type": "object",
        "required": ["agent_id", "from_number", "to_number"],
        "properties": {
            "agent_id": {"type": "string", "minLength": 1, "maxLength": 200},
            "from_number": {"type": "string", "maxLength": 64},
            "to_number": {"type": "string", "maxLength": 64},
            "direction": {"enum": ["inbound", "outbound", None]},
            "conversation_initiation_client_data": CLIENT_DATA,
        },
    },
)


@api.post(
    "/v1/convai/twilio/register-call",
    summary="TwiML that connects a call placed on your own Twilio account to the agent",
    description=(
        "For a call you placed (or received) yourself: answer Twilio's request for the "
        "answered call with this TwiML. It streams the call's audio through callbridge's relay "
        "to the agent, with the conversation data given here, and the call is recorded as a "
        "contact of the agent's registered-calls campaign. The person is to_number, or "
        "from_number when direction is inbound."
    ),
    body=REGISTER,
    responses={200: Response({"type": "string"}, content_type="text/xml")},
)
async def register_twilio_call(request: web.Request) -> web.Response:
    body = body_of(request)
    app = request.app
    client_data = body.get("conversation_initiation_client_data")
    options = agent_options(client_data)
    person = body["from_number"] if body.get("direction") == "inbound" else body["to_number"]
    attempt = await register_call(
        app[SESSIONMAKER],
        agent_id=body["agent_id"],
        number=person,
        # The register-call API answers a call on the user's own Twilio number.
        provider=twilio.PROVIDER,
        dynamic_variables=client_variables(client_data),
        agent_override=options.agent_override,
        user_id=options.user_id,
    )
    context = await load_context(app[SESSIONMAKER], attempt.id)
    assert context is not None
    # Open the agent conversation while Twilio sets up the stream, as for our own calls.
    app[AGENT_CONNECTOR].prepare(context)
    token = tokens.issue(app[MEDIA_TOKEN_SECRET], attempt.id, tokens.REGISTERED_CALL)
    response = markup.stream(stream_url(app[SETTINGS].base_url, attempt.id), attempt.id, token)
    return markup.twiml_response(response)


async def _first_dial(sm: Any, contact_id: str) -> Attempt | None:
    deadline = time.monotonic() + OUTBOUND_WAIT_SECONDS
    while True:
        async with sm() as session:
            attempt = await session.scalar(
                select(Attempt).where(Attempt.contact_id == contact_id).order_by(Attempt.number)
            )
        if (attempt is not None and attempt.provider_call_id) or time.monotonic() > deadline:
            return attempt
        await asyncio.sleep(0.1)
