"""ElevenLabs-compatible outbound campaigns (``client.conversational_ai.outbound_campaigns``).

An outbound campaign is a callbridge campaign (its id is the campaign id) with an
``outbound_campaigns`` row holding the policy it took; a lead is a contact (its listed numbers are
the contact's number and alternate numbers); a call is an attempt; an attention item is a
campaign's attention item. Only campaigns created here are listed here.

The policy means what callbridge honours: ``calling_periods`` (read in each recipient's own zones,
callbridge's rule; ``timezone`` for numbers without a zone of their own),
``retry.retry_delay_seconds``, ``retry.max_total_calls``,
``retry.max_consecutive_failures_per_number`` (then the lead's next number, or the lead ends),
``retry.max_short_retries`` per calling window and where a call pushed to a later window lands
(``interval_placement`` start, random or rotate by ``rotate_step_seconds``; campaigns.policy).
Follow-ups the conversations ask for (campaigns.followups) follow ``retry.max_callbacks``,
``retry.max_redirects``, ``followup_context`` and ``data_collection`` (the report items that
carry a callback time, a redirect number and a stop: each defaults to the item of that name,
``null`` turns it off; ``mappings`` copies other results into later calls' variables).
Fields callbridge does not honour yet (branches, environments, WhatsApp) are refused with a 422
naming the field, never silently dropped.

This module holds the handlers; the schemas are in outbound_schemas, the policy's checks and
settings in outbound_policy, the renderers in outbound_representations.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bridge.api.elevenlabs_shared import (
    client_variables,
    create_and_start,
    default_caller_id,
    recipient_error,
    recording_option,
    unix_seconds,
)
from bridge.api.errors import ApiError
from bridge.api.export import neutralise
from bridge.api.openapi import Response, body_of, query_of
from bridge.api.outbound_policy import (
    check_policy,
    effective_policy,
    follow_up_settings,
    not_supported,
    policy_spec,
    refuse,
)
from bridge.api.outbound_representations import (
    TERMINAL,
    CallFollowUps,
    attention_json,
    call_json,
    campaign_json,
    lead_json,
)
from bridge.api.outbound_schemas import (
    ATTENTION,
    ATTENTION_PAGE,
    CALL_PAGE,
    CAMPAIGN,
    CAMPAIGN_PAGE,
    CONFIG,
    CONFIG_BODY,
    LEAD,
    LEAD_PAGE,
    PAGE_QUERY,
    PREFIX,
    STATUSES,
    SUBMIT,
    SUBMITTED,
    api,
)
from bridge.api.paging import after_cursor, cursor_page
from bridge.app_keys import READ_SESSIONMAKER, SESSIONMAKER
from campaigns import followups
from campaigns import policy as planning
from campaigns.api_tables import OutboundCampaign, OutboundConfig
from campaigns.clock import utcnow
from campaigns.contact_list import ContactItem, parse_items
from campaigns.intake.report import RowError
from campaigns.lifecycle import (
    CampaignError,
    cancel,
    get_campaign,
    pause,
    remove_contact,
    resume,
)
from campaigns.models import (
    Attempt,
    AttemptStatus,
    AttentionItem,
    Campaign,
    CampaignStatus,
    Contact,
    ContactState,
    FollowUpRequest,
)
from campaigns.outbound import lead_counts, pause_all, stop_all
from campaigns.phones import DEFAULT_NUMBER_TYPES, PhoneRejected, normalize

routes = api.routes

# -- campaigns ----------------------------------------------------------------------------


async def _campaign(session: Any, campaign_id: str) -> Campaign:
    """The outbound campaign named; other campaigns (batches, /api/v1 ones) are not found."""
    try:
        campaign = await get_campaign(session, campaign_id)
    except CampaignError as exc:
        raise ApiError(404, "not_found", f"no outbound campaign {campaign_id!r}") from exc
    if (
        campaign.status == CampaignStatus.DRAFT
        or await session.get(OutboundCampaign, campaign.id) is None
    ):
        raise ApiError(404, "not_found", f"no outbound campaign {campaign_id!r}")
    return campaign


def _request_hash(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _by_key(session: Any, key: str | None) -> OutboundCampaign | None:
    """The outbound campaign a submit with this idempotency_key made."""
    return await session.scalar(
        select(OutboundCampaign).where(OutboundCampaign.idempotency_key == key)
    )


async def _config(session: Any) -> OutboundConfig | None:
    return await session.get(OutboundConfig, 1)


def _items(body: dict[str, Any]) -> tuple[list[ContactItem], list[list[str]]]:
    items, alternates = [], []
    for index, recipient in enumerate(body["recipients"]):
        if recipient.get("whatsapp_user_id"):
            raise not_supported(f"recipients.{index}.whatsapp_user_id")
        numbers = [n for n in [recipient.get("phone_number")] if n]
        numbers += list(recipient.get("phone_numbers") or [])
        if not numbers:
            raise refuse(f"recipients.{index}.phone_number", "a recipient needs a number")
        items.append(
            ContactItem(
                phone_number=numbers[0],
                external_id=recipient.get("id") or None,
                dynamic_variables=client_variables(
                    recipient.get("conversation_initiation_client_data")
                ),
            )
        )
        alternates.append(numbers[1:])
    return items, alternates


def _alternates(numbers: list[str], row: int) -> tuple[tuple[str, ...], list[RowError]]:
    found: list[str] = []
    errors = []
    for raw in numbers:
        try:
            e164 = normalize(raw, "US", DEFAULT_NUMBER_TYPES).e164
        except PhoneRejected as exc:
            errors.append(RowError(row, raw[:100], exc.reason, exc.number_type))
            continue
        if e164 not in found:
            found.append(e164)
    return tuple(found), errors


@api.post(
    f"{PREFIX}/campaigns/submit",
    summary="Create an outbound campaign (a repeat with the same idempotency_key returns it)",
    body=SUBMIT,
    responses={201: SUBMITTED, 200: SUBMITTED},
)
async def submit(request: web.Request) -> web.Response:
    body = body_of(request)
    sm = request.app[SESSIONMAKER]
    channel = body["channel_config"]
    if channel["channel"] != "phone":
        raise not_supported("channel_config.channel")
    if not channel.get("agent_phone_number_id"):
        raise refuse("channel_config.agent_phone_number_id", "required for phone campaigns")
    for name in ("branch_id", "environment"):
        if body.get(name):
            raise not_supported(name)
    request_hash = _request_hash(body)
    key = body.get("idempotency_key")
    async with sm() as session:
        if key:
            existing = await _by_key(session, key)
            if existing is not None:
                return await _repeat(request, session, existing, request_hash)
        config = await _config(session)
    policy = effective_policy(body, config.config if config else None)
    if body.get("policy") is None and body.get("variant") != "simple":
        check_policy(policy, "config.policy")
    spec = policy_spec(body, policy)
    items, alternates = _items(body)
    parsed = parse_items(items, "US")
    errors = list(parsed.errors)
    contacts = []
    for contact in parsed.contacts:
        found, wrong = _alternates(alternates[contact.row - 1], contact.row)
        errors += wrong
        contacts.append(
            dataclasses.replace(contact, alternates=tuple(n for n in found if n != contact.e164))
        )
    parsed = dataclasses.replace(parsed, contacts=contacts)
    if errors:
        raise ApiError(
            422,
            "invalid_recipients",
            f"{len(errors)} recipient number(s) cannot be called; nothing was created",
            [recipient_error(error) for error in sorted(errors, key=lambda e: e.row)],
        )

    async def write(session: AsyncSession, campaign_id: str) -> None:
        session.add(
            OutboundCampaign(
                campaign_id=campaign_id,
                idempotency_key=key,
                request_hash=request_hash,
                variant=body.get("variant") or "advanced",
                phone_number_id=channel["agent_phone_number_id"],
                mode_config=channel.get("mode_config"),
                policy=policy,
                updated_at=utcnow(),
            )
        )
        session.add(follow_up_settings(policy, campaign_id))

    recording = recording_option(channel.get("mode_config"))
    try:
        campaign = await create_and_start(
            request, spec, parsed, body["recipients"], recording, write
        )
    except IntegrityError:
        # The same key was used by a create that committed first: that campaign is the answer.
        async with sm() as session:
            existing = await _by_key(session, key)
            if existing is None:
                raise
            return await _repeat(request, session, existing, request_hash)
    async with sm() as session:
        return await _submitted(request, session, campaign, created=True)


# How many leads are looked at to tell whether calling starts now (their zones differ).
WINDOW_SAMPLE = 100


async def _within_window(session: Any, campaign: Campaign) -> bool:
    """Whether some lead may be called now: windows are read in each lead's own zones."""
    now = utcnow()
    if campaign.start_at is not None and campaign.start_at > now:
        return False
    contacts = await session.scalars(
        select(Contact)
        .where(Contact.campaign_id == campaign.id, Contact.state != ContactState.DONE)
        .order_by(Contact.id)
        .limit(WINDOW_SAMPLE)
    )
    for contact in contacts:
        at = planning.plan(campaign, contact, now)
        if at is not None and at <= now:
            return True
    return False


async def _repeat(
    request: web.Request, session: Any, existing: OutboundCampaign, request_hash: str
) -> web.Response:
    if existing.request_hash != request_hash:
        raise ApiError(
            409,
            "idempotency_key_reused",
            "this idempotency_key was used by another request",
        )
    campaign = await get_campaign(session, existing.campaign_id)
    return await _submitted(request, session, campaign, created=False)


async def _submitted(
    request: web.Request, session: Any, campaign: Campaign, *, created: bool
) -> web.Response:
    """What a submit answers: 201 with the campaign it created, 200 with the one it repeats."""
    return web.json_response(
        {
            "campaign": await campaign_json(session, campaign, default_caller_id(request)),
            "created": created,
            "within_calling_window": await _within_window(session, campaign),
        },
        status=201 if created else 200,
    )


def _many(request: web.Request, name: str) -> set[str]:
    """A list parameter: repeated (``?status=a&status=b``, as the SDK sends a list) or
    comma-separated."""
    return {v for raw in request.query.getall(name, []) for v in raw.split(",") if v}


@api.get(
    f"{PREFIX}/campaigns",
    summary="List outbound campaigns, newest first",
    query={
        **PAGE_QUERY,
        "status": {"type": "string", "maxLength": 200},
        "agent_id": {"type": "string", "maxLength": 200},
        "channel": {"enum": ["phone", "whatsapp"]},
        "mode": {"enum": ["voice", "message"]},
        "search": {"type": "string", "maxLength": 200},
    },
    responses={200: CAMPAIGN_PAGE},
)
async def list_campaigns(request: web.Request) -> web.Response:
    query = query_of(request)
    limit = query["page_size"]
    wanted = _many(request, "status")
    if wanted - set(STATUSES):
        raise ApiError(422, "invalid_query", f"status: one of {', '.join(STATUSES)}")
    async with request.app[READ_SESSIONMAKER]() as session:
        if query.get("channel") == "whatsapp" or query.get("mode") == "message":
            return web.json_response({"campaigns": [], "next_cursor": None, "has_more": False})
        statement = (
            select(Campaign)
            .join(OutboundCampaign, OutboundCampaign.campaign_id == Campaign.id)
            .where(Campaign.status != CampaignStatus.DRAFT)
        )
        if query.get("agent_id"):
            statement = statement.where(Campaign.agent_id == query["agent_id"])
        if query.get("search"):
            statement = statement.where(Campaign.name.contains(query["search"], autoescape=True))
        if query.get("cursor"):
            statement = statement.where(
                await after_cursor(session, Campaign, query["cursor"], "campaign")
            )
        statement = statement.order_by(Campaign.created_at.desc(), Campaign.id.desc())
        found: list[dict[str, Any]] = []
        last: Campaign | None = None
        has_more = False
        # Status is derived (attention, stopping): filtered here. A workspace has campaigns by
        # the hundred, not the million: they are read whole rather than streamed while each
        # one's counts are queried on the same connection.
        for campaign in list(await session.scalars(statement)):
            view = await campaign_json(session, campaign, default_caller_id(request))
            if wanted and view["status"] not in wanted:
                continue
            if len(found) == limit:
                has_more = True
                break
            found.append(view)
            last = campaign
    return web.json_response(
        {
            "campaigns": found,
            "next_cursor": last.id if has_more and last else None,
            "has_more": has_more,
        }
    )


@api.get(
    f"{PREFIX}/campaigns/{{campaign_id}}",
    summary="An outbound campaign",
    responses={200: CAMPAIGN},
)
async def read(request: web.Request) -> web.Response:
    async with request.app[READ_SESSIONMAKER]() as session:
        campaign = await _campaign(session, request.match_info["campaign_id"])
        return web.json_response(await campaign_json(session, campaign, default_caller_id(request)))


async def _change(
    request: web.Request, action: Callable[[Any, str], Awaitable[Any]]
) -> web.Response:
    """Apply a lifecycle ``action`` (pause, resume, cancel) to the campaign the path names, and
    answer with the campaign as it is then."""
    sm = request.app[SESSIONMAKER]
    async with sm() as session:
        campaign_id = (await _campaign(session, request.match_info["campaign_id"])).id
    await action(sm, campaign_id)
    async with sm() as session:
        campaign = await get_campaign(session, campaign_id)
        return web.json_response(await campaign_json(session, campaign, default_caller_id(request)))


@api.post(
    f"{PREFIX}/campaigns/{{campaign_id}}/pause",
    summary="Pause: no new calls until resumed; calls under way finish",
    responses={200: CAMPAIGN, 409: None},
)
async def pause_campaign(request: web.Request) -> web.Response:
    return await _change(request, pause)


@api.post(
    f"{PREFIX}/campaigns/{{campaign_id}}/resume",
    summary="Resume a paused campaign",
    responses={200: CAMPAIGN, 409: None},
)
async def resume_campaign(request: web.Request) -> web.Response:
    return await _change(request, resume)


@api.post(
    f"{PREFIX}/campaigns/{{campaign_id}}/stop",
    summary="Stop for good: queued calls are cancelled, calls under way finish",
    responses={200: CAMPAIGN, 409: None},
)
async def stop_campaign(request: web.Request) -> web.Response:
    return await _change(request, cancel)


@api.post(
    f"{PREFIX}/campaigns/pause-all",
    summary="Pause every running outbound campaign",
    responses={
        200: {
            "type": "object",
            "required": ["paused_campaign_ids"],
            "properties": {"paused_campaign_ids": {"type": "array", "items": {"type": "string"}}},
        }
    },
)
async def pause_all_campaigns(request: web.Request) -> web.Response:
    paused = await pause_all(request.app[SESSIONMAKER])
    return web.json_response({"paused_campaign_ids": paused})


@api.post(
    f"{PREFIX}/campaigns/stop-all",
    summary="Stop every unfinished outbound campaign (202 while placed calls finish)",
    responses={
        status: {
            "type": "object",
            "required": ["stopped_campaign_ids", "stopping_campaign_ids"],
            "properties": {
                "stopped_campaign_ids": {"type": "array", "items": {"type": "string"}},
                "stopping_campaign_ids": {"type": "array", "items": {"type": "string"}},
            },
        }
        for status in (200, 202)
    },
)
async def stop_all_campaigns(request: web.Request) -> web.Response:
    stopped = await stop_all(request.app[SESSIONMAKER])
    stopping = [campaign_id for campaign_id, live in stopped if live]
    return web.json_response(
        {
            "stopped_campaign_ids": [campaign_id for campaign_id, live in stopped if not live],
            "stopping_campaign_ids": stopping,
        },
        status=202 if stopping else 200,
    )


@api.get(
    f"{PREFIX}/campaigns/{{campaign_id}}/progress",
    summary="Leads by stage and calls scheduled or under way",
    responses={200: {"type": "object", "required": ["leads", "conversations"]}},
)
async def progress(request: web.Request) -> web.Response:
    async with request.app[READ_SESSIONMAKER]() as session:
        campaign = await _campaign(session, request.match_info["campaign_id"])
        counts = await lead_counts(session, campaign.id)
    by_disposition: dict[str, int] = {}
    for disposition, number in counts.finished_by_disposition.items():
        key = TERMINAL.get(disposition, "couldnt_process")
        by_disposition[key] = by_disposition.get(key, 0) + number
    held = counts.open_attention > 0
    pending = counts.total - counts.finished - counts.live_calls
    return web.json_response(
        {
            "leads": {
                "total": counts.total,
                "uncalled": 0 if held else counts.uncalled,
                "leads_needing_attention": (counts.uncalled + counts.live) if held else 0,
                "active": 0 if held else counts.live,
                "finished": counts.finished,
                "finished_by_disposition": by_disposition,
            },
            "conversations": {
                "scheduled": max(pending, 0),
                "scheduled_by_type": {},
                "awaiting_permission": 0,
                "in_progress": counts.live_calls,
                "awaiting_analysis": 0,
            },
            "next_call_time_unix": unix_seconds(counts.next_call_at)
            if counts.next_call_at
            else None,
        }
    )


@api.get(
    f"{PREFIX}/campaigns/{{campaign_id}}/follow-up-requests",
    summary="Callbacks and redirects the contacts asked for, by what the campaign did about them",
    description=(
        "Beyond ElevenLabs: `stops` counts the requests never to be called again (each one "
        "puts the number on the do-not-call list)."
    ),
    responses={200: {"type": "object", "required": ["callbacks", "redirects"]}},
)
async def follow_up_requests(request: web.Request) -> web.Response:
    async with request.app[READ_SESSIONMAKER]() as session:
        campaign = await _campaign(session, request.match_info["campaign_id"])
        found = await followups.counts(session, campaign.id)

    def view(counts: followups.Counts) -> dict[str, Any]:
        return {
            "requested": counts.requested,
            "requested_by_disposition": dict(counts.by_decision or {}),
            "distinct_leads": counts.distinct_leads,
        }

    return web.json_response(
        {
            "callbacks": view(found[followups.CALLBACK]),
            "redirects": view(found[followups.REDIRECT]),
            "stops": view(found[followups.STOP]),
        }
    )


# -- leads --------------------------------------------------------------------------------


@api.get(
    f"{PREFIX}/campaigns/{{campaign_id}}/leads",
    summary="The campaign's leads, one per recipient",
    query={
        **PAGE_QUERY,
        "search": {"type": "string", "maxLength": 200},
        "status": {"enum": ["in_progress", "finished"]},
        "disposition": {"type": "string", "maxLength": 500},
    },
    responses={200: LEAD_PAGE},
)
async def list_leads(request: web.Request) -> web.Response:
    query = query_of(request)
    limit = query["page_size"]
    async with request.app[READ_SESSIONMAKER]() as session:
        campaign = await _campaign(session, request.match_info["campaign_id"])
        statement = select(Contact).where(Contact.campaign_id == campaign.id)
        if query.get("status") == "finished":
            statement = statement.where(Contact.state == ContactState.DONE)
        elif query.get("status") == "in_progress":
            statement = statement.where(Contact.state != ContactState.DONE)
        wanted = _many(request, "disposition")
        if wanted:
            dispositions = [d for d, terminal in TERMINAL.items() if terminal in wanted]
            statement = statement.where(Contact.disposition.in_(dispositions))
        if query.get("search"):
            text = query["search"]
            statement = statement.where(
                or_(
                    Contact.id.contains(text, autoescape=True),
                    Contact.user_id.contains(text, autoescape=True),
                    Contact.phone_number.contains(text, autoescape=True),
                    Contact.external_id.contains(text, autoescape=True),
                )
            )
        if query.get("cursor"):
            statement = statement.where(Contact.id > query["cursor"])
        contacts, has_more = cursor_page(
            list(await session.scalars(statement.order_by(Contact.id).limit(limit + 1))), limit
        )
        honoured = await followups.per_contact(session, [c.id for c in contacts])
    return web.json_response(
        {
            "leads": [lead_json(c, honoured.get(c.id)) for c in contacts],
            "next_cursor": contacts[-1].id if has_more else None,
            "has_more": has_more,
        }
    )


async def _lead(session: Any, campaign_id: str, lead_id: str) -> Contact:
    contact = await session.scalar(
        select(Contact).where(Contact.id == lead_id, Contact.campaign_id == campaign_id)
    )
    if contact is None:
        raise ApiError(404, "not_found", f"no lead {lead_id!r} in this campaign")
    return contact


@api.get(
    f"{PREFIX}/campaigns/{{campaign_id}}/leads/{{lead_id}}",
    summary="One lead",
    responses={200: LEAD},
)
async def read_lead(request: web.Request) -> web.Response:
    async with request.app[READ_SESSIONMAKER]() as session:
        campaign = await _campaign(session, request.match_info["campaign_id"])
        contact = await _lead(session, campaign.id, request.match_info["lead_id"])
        honoured = await followups.per_contact(session, [contact.id])
    return web.json_response(lead_json(contact, honoured.get(contact.id)))


@api.delete(
    f"{PREFIX}/campaigns/{{campaign_id}}/leads/{{lead_id}}",
    summary="Remove a lead so it is never called again (202 while a placed call may go on)",
    responses={
        status: {
            "type": "object",
            "required": ["campaign_id", "lead_id", "has_calls_in_flight"],
            "properties": {
                "campaign_id": {"type": "string"},
                "lead_id": {"type": "string"},
                "has_calls_in_flight": {"type": "boolean"},
            },
        }
        for status in (200, 202)
    },
)
async def delete_lead(request: web.Request) -> web.Response:
    sm = request.app[SESSIONMAKER]
    async with sm() as session:
        campaign = await _campaign(session, request.match_info["campaign_id"])
        contact = await _lead(session, campaign.id, request.match_info["lead_id"])
    await remove_contact(sm, campaign.id, contact.id)
    async with sm() as session:
        live = await session.scalar(
            select(Attempt.id).where(
                Attempt.contact_id == contact.id, Attempt.status.in_(AttemptStatus.LIVE)
            )
        )
    return web.json_response(
        {"campaign_id": campaign.id, "lead_id": contact.id, "has_calls_in_flight": bool(live)},
        status=202 if live else 200,
    )


# -- calls --------------------------------------------------------------------------------


async def _calls(
    session: Any, campaign_id: str, query: dict[str, Any], limit: int | None
) -> list[tuple[Attempt, Contact, bool, CallFollowUps]]:
    statement = (
        select(Attempt, Contact)
        .join(Contact, Contact.id == Attempt.contact_id)
        .where(Attempt.campaign_id == campaign_id)
    )
    if query.get("lead_id"):
        statement = statement.where(Attempt.contact_id == query["lead_id"])
    if query.get("cursor"):
        statement = statement.where(await after_cursor(session, Attempt, query["cursor"], "call"))
    statement = statement.order_by(Attempt.created_at.desc(), Attempt.id.desc())
    if limit is not None:
        statement = statement.limit(limit)
    rows = (await session.execute(statement)).all()
    latest: dict[str, int] = {}
    # Each contact's calls in order, to tell which follow-up (if any) placed each one.
    order: dict[str, list[tuple[Any, str]]] = {}
    for attempt_id, contact_id, number, created_at, status in (
        await session.execute(
            select(
                Attempt.id, Attempt.contact_id, Attempt.number, Attempt.created_at, Attempt.status
            ).where(Attempt.campaign_id == campaign_id)
        )
    ).all():
        latest[contact_id] = max(latest.get(contact_id, 0), number)
        if status != AttemptStatus.NOT_PLACED:
            order.setdefault(contact_id, []).append((created_at, attempt_id))
    asked: dict[str, list[tuple[str, str]]] = {}
    for attempt_id, kind, decision in (
        await session.execute(
            select(FollowUpRequest.attempt_id, FollowUpRequest.kind, FollowUpRequest.decision)
            .where(FollowUpRequest.campaign_id == campaign_id)
            .order_by(FollowUpRequest.kind)
        )
    ).all():
        asked.setdefault(attempt_id, []).append((kind, decision))
    intent: dict[str, str] = {}
    for calls in order.values():
        previous: str | None = None
        for _, attempt_id in sorted(calls):
            if previous is None:
                intent[attempt_id] = "initial"
            else:
                queued = [k for k, d in asked.get(previous, []) if d in followups.Decision.QUEUED]
                intent[attempt_id] = queued[0] if queued else "retry"
            previous = attempt_id

    def follow(attempt: Attempt) -> CallFollowUps:
        decisions = [d for _, d in asked.get(attempt.id, [])]
        stop = followups.Decision.DO_NOT_CALL
        decision = stop if stop in decisions else next(iter(decisions), None)
        return CallFollowUps(intent.get(attempt.id, "initial"), decision)

    return [(a, c, latest.get(a.contact_id) == a.number, follow(a)) for a, c in rows]


@api.get(
    f"{PREFIX}/campaigns/{{campaign_id}}/calls",
    summary="The campaign's calls, newest first",
    query={
        **PAGE_QUERY,
        "lead_id": {"type": "string", "maxLength": 64},
        "status": {"enum": ["queued", "submitted", "completed", "cancelled", "attention"]},
        "call_result": {"type": "string", "maxLength": 200},
        "stage": {"type": "string", "maxLength": 32},
    },
    responses={200: CALL_PAGE},
)
async def list_calls(request: web.Request) -> web.Response:
    query = query_of(request)
    limit = query["page_size"]
    results = _many(request, "call_result")
    async with request.app[READ_SESSIONMAKER]() as session:
        campaign = await _campaign(session, request.match_info["campaign_id"])
        rows = await _calls(session, campaign.id, query, None)
    calls = []
    has_more = False
    last_id = None
    for attempt, contact, last, follow in rows:
        view = call_json(attempt, contact, last, follow)
        if query.get("status") and view["status"] != query["status"]:
            continue
        if results and view["call_result"] not in results:
            continue
        if len(calls) == limit:
            has_more = True
            break
        calls.append(view)
        last_id = attempt.id
    return web.json_response(
        {"calls": calls, "next_cursor": last_id if has_more else None, "has_more": has_more}
    )


EXPORT_COLUMNS = [
    "intent_id",
    "lead_id",
    "recipient_id",
    "intent_type",
    "cold_attempt",
    "status",
    "phone_number",
    "scheduled_time_unix",
    "conversation_id",
    "call_result",
    "outcome_at_unix",
    "decision_disposition",
]


@api.get(
    f"{PREFIX}/campaigns/{{campaign_id}}/export",
    summary="Every call of the campaign as CSV (formula cells neutralised)",
    query={"limit": {"type": "integer", "minimum": 1, "maximum": 1_000_000}},
    responses={200: Response({"type": "string"}, content_type="text/csv")},
)
async def export_calls(request: web.Request) -> web.Response:
    query = query_of(request)
    async with request.app[READ_SESSIONMAKER]() as session:
        campaign = await _campaign(session, request.match_info["campaign_id"])
        rows = await _calls(session, campaign.id, {}, query.get("limit"))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    for attempt, contact, last, follow in rows:
        view = {**call_json(attempt, contact, last, follow), "recipient_id": contact.external_id}
        writer.writerow(
            [neutralise("" if view[c] is None else str(view[c])) for c in EXPORT_COLUMNS]
        )
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{campaign.id}-calls.csv"'},
    )


# -- attention ----------------------------------------------------------------------------


@api.get(
    f"{PREFIX}/attention",
    summary="Problems in outbound campaigns that need someone to act, newest first",
    query={
        **PAGE_QUERY,
        "campaign_id": {"type": "string", "maxLength": 64},
        "include_resolved": {"type": "boolean", "default": False},
    },
    responses={200: ATTENTION_PAGE},
)
async def list_attention(request: web.Request) -> web.Response:
    query = query_of(request)
    limit = query["page_size"]
    async with request.app[READ_SESSIONMAKER]() as session:
        statement = select(AttentionItem).join(
            OutboundCampaign, OutboundCampaign.campaign_id == AttentionItem.campaign_id
        )
        if query.get("campaign_id"):
            statement = statement.where(AttentionItem.campaign_id == query["campaign_id"])
        if not query.get("include_resolved"):
            statement = statement.where(AttentionItem.resolved_at.is_(None))
        if query.get("cursor"):
            cursor = query["cursor"]
            statement = statement.where(
                await after_cursor(session, AttentionItem, cursor, "attention item")
            )
        newest_first = (AttentionItem.created_at.desc(), AttentionItem.id.desc())
        items, has_more = cursor_page(
            list(await session.scalars(statement.order_by(*newest_first).limit(limit + 1))), limit
        )
    return web.json_response(
        {
            "attention": [attention_json(i) for i in items],
            "next_cursor": items[-1].id if has_more else None,
            "has_more": has_more,
        }
    )


async def _attention(session: Any, attention_id: str) -> AttentionItem:
    item = await session.scalar(
        select(AttentionItem)
        .join(OutboundCampaign, OutboundCampaign.campaign_id == AttentionItem.campaign_id)
        .where(AttentionItem.id == attention_id)
    )
    if item is None:
        raise ApiError(404, "not_found", f"no attention item {attention_id!r}")
    return item


@api.post(
    f"{PREFIX}/attention/{{attention_id}}/retry",
    summary="The cause is fixed: resume the campaign the item paused, closing the item",
    responses={200: ATTENTION, 409: None},
)
async def retry_attention(request: web.Request) -> web.Response:
    sm = request.app[SESSIONMAKER]
    item = await _open_attention(request)
    assert item.campaign_id is not None
    async with sm() as session:
        campaign = await get_campaign(session, item.campaign_id)
    if campaign.status == CampaignStatus.PAUSED:
        # Resuming closes the campaign's open items (lifecycle.resume).
        await resume(sm, item.campaign_id)
    else:
        await _resolve(sm, item.id, None)
    return await _attention_answer(request, item.id)


async def _open_attention(request: web.Request) -> AttentionItem:
    """The attention item the path names; 409 once it is resolved."""
    async with request.app[SESSIONMAKER]() as session:
        item = await _attention(session, request.match_info["attention_id"])
    if item.resolved_at is not None:
        raise ApiError(409, "conflict", "the attention item is already resolved")
    return item


async def _attention_answer(request: web.Request, attention_id: str) -> web.Response:
    async with request.app[SESSIONMAKER]() as session:
        return web.json_response(attention_json(await _attention(session, attention_id)))


async def _resolve(sm: Any, attention_id: str, resolution: str | None) -> None:
    async with sm.begin() as session:
        item = await session.get(AttentionItem, attention_id, with_for_update=True)
        if item is None or item.resolved_at is not None:
            return
        item.resolved_at = utcnow()
        if resolution is not None:
            item.details = {**(item.details or {}), "resolution": resolution}


@api.post(
    f"{PREFIX}/attention/{{attention_id}}/resolve",
    summary="Close an attention item, recording how it was handled (the campaign stays paused)",
    body={
        "type": "object",
        "required": ["resolution"],
        "properties": {"resolution": {"type": "string", "minLength": 1, "maxLength": 2000}},
    },
    responses={200: ATTENTION, 409: None},
)
async def resolve_attention(request: web.Request) -> web.Response:
    body = body_of(request)
    sm = request.app[SESSIONMAKER]
    item = await _open_attention(request)
    await _resolve(sm, item.id, body["resolution"])
    return await _attention_answer(request, item.id)


# -- workspace configuration --------------------------------------------------------------


@api.get(
    f"{PREFIX}/config",
    summary="The workspace's outbound campaign configuration",
    responses={200: CONFIG, 404: None},
)
async def read_config(request: web.Request) -> web.Response:
    async with request.app[READ_SESSIONMAKER]() as session:
        config = await _config(session)
    if config is None:
        raise ApiError(404, "not_found", "no outbound campaign configuration yet")
    return web.json_response({"version": config.version, "config": config.config})


@api.put(
    f"{PREFIX}/config",
    summary="Create or replace the configuration (expected_version: the version last read)",
    body={
        "type": "object",
        "required": ["config"],
        "properties": {
            "expected_version": {"type": ["integer", "null"], "minimum": 0},
            "config": CONFIG_BODY,
        },
    },
    responses={200: CONFIG, 409: None},
)
async def update_config(request: web.Request) -> web.Response:
    body = body_of(request)
    config = body["config"]
    if config.get("whatsapp_voice_policy"):
        raise not_supported("config.whatsapp_voice_policy")
    if config.get("policy") is not None:
        check_policy(config["policy"], "config.policy")
    for agent_id, override in (config.get("agent_policies") or {}).items():
        check_policy(override, f"config.agent_policies.{agent_id}")
    try:
        answer = await _replace_config(request, config, body.get("expected_version"))
    except IntegrityError as exc:
        # Two first configurations at once: one is written, the other was based on nothing.
        raise ApiError(409, "conflict", "the configuration was created meanwhile") from exc
    return web.json_response(answer)


async def _replace_config(
    request: web.Request, config: dict[str, Any], expected: int | None
) -> dict[str, Any]:
    async with request.app[SESSIONMAKER].begin() as session:
        row = await session.get(OutboundConfig, 1, with_for_update=True)
        if row is None:
            if expected is not None:
                raise ApiError(409, "conflict", "there is no configuration to replace yet")
            row = OutboundConfig(id=1, version=1, config=config, updated_at=utcnow())
            session.add(row)
        else:
            if expected != row.version:
                raise ApiError(
                    409,
                    "version_conflict",
                    f"the configuration is at version {row.version}, not {expected}: read it again",
                )
            row.version += 1
            row.config = config
            row.updated_at = utcnow()
        return {"version": row.version, "config": config}
