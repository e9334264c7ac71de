"""Campaign routes: create, list, change, delete, contacts (CSV or JSON), start, calls, export.

The schemas and settings checks are in campaign_schemas, the renderers in representations, the
paging in paging."""

from __future__ import annotations

import tempfile

from aiohttp import web
from sqlalchemy import ColumnElement, select

from bridge.api.bodies import spool_body
from bridge.api.campaign_schemas import (
    ATTEMPT,
    ATTEMPT_FILTERS,
    CAMPAIGN,
    CAMPAIGN_CREATE,
    CAMPAIGN_UPDATE,
    CONTACT,
    CONTACTS_JSON,
    IMPORT_REPORT,
    api,
    instant_query,
    spec_from,
    spec_values,
)
from bridge.api.errors import ApiError
from bridge.api.export import export_response
from bridge.api.openapi import PAGE_HEADERS, PAGE_QUERY, Response, body_of, query_of
from bridge.api.paging import page_of
from bridge.api.representations import attempt_json, campaign_json, contact_json
from bridge.app_keys import READ_SESSIONMAKER, SCHEDULER, SESSIONMAKER
from bridge.telephony.factory import agent_connections
from campaigns.clock import iso_z, utcnow
from campaigns.contact_list import ContactItem, add_contacts
from campaigns.editing import delete_draft, update_campaign
from campaigns.intake.contacts import import_contacts
from campaigns.intake.report import ImportReport
from campaigns.lifecycle import (
    campaign_counts,
    create_campaign,
    get_campaign,
    next_call_at,
    request_start,
)
from campaigns.models import Attempt, Campaign, CampaignStatus, Contact
from campaigns.phones import number_types_of

routes = api.routes

MAX_UPLOAD_BYTES = 2 * 1024**3
# Uploads up to this size stay in memory; larger ones spill to a temporary file.
SPOOL_BYTES = 8 * 1024**2


async def list_attempts(request: web.Request, *conditions: ColumnElement[bool]) -> web.Response:
    """Attempts matching ``conditions`` and the request's filters, one page, oldest first."""
    query = query_of(request)
    page, per_page = query["page"], query["per_page"]
    where = list(conditions)
    if query.get("status"):
        where.append(Attempt.status == query["status"])
    if query.get("answered_by"):
        where.append(Attempt.answered_by == query["answered_by"])
    if (since := instant_query(query, "since")) is not None:
        where.append(Attempt.created_at >= since)
    if (until := instant_query(query, "until")) is not None:
        where.append(Attempt.created_at < until)
    async with request.app[READ_SESSIONMAKER]() as session:
        order = (Attempt.created_at, Attempt.id)
        return await page_of(session, Attempt, where, order, attempt_json, page, per_page)


@api.post(
    "/api/v1/campaigns",
    summary="Create a campaign (status draft)",
    body=CAMPAIGN_CREATE,
    responses={201: CAMPAIGN},
)
async def create(request: web.Request) -> web.Response:
    spec = spec_from(body_of(request))
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
    async with request.app[READ_SESSIONMAKER]() as session:
        order = (Campaign.created_at.desc(), Campaign.id.desc())
        return await page_of(session, Campaign, where, order, campaign_json, page, per_page)


@api.get(
    "/api/v1/campaigns/{campaign_id}",
    summary="A campaign with its counts",
    responses={200: CAMPAIGN},
)
async def read(request: web.Request) -> web.Response:
    async with request.app[READ_SESSIONMAKER]() as session:
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
    changes = spec_values(body_of(request))
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
    async with request.app[READ_SESSIONMAKER]() as session:
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
    async with request.app[READ_SESSIONMAKER]() as session:
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
    async with request.app[READ_SESSIONMAKER]() as session:
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
