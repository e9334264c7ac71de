"""Do-not-call lists over the API: one global list and one per campaign."""

from __future__ import annotations

import tempfile
from typing import Any

from aiohttp import web
from sqlalchemy import or_, select

from bridge.api.bodies import spool_body
from bridge.api.errors import ApiError
from bridge.api.openapi import PAGE_HEADERS, PAGE_QUERY, Api, Response, body_of, query_of
from bridge.api.paging import page_of
from bridge.app_keys import READ_SESSIONMAKER, SESSIONMAKER
from campaigns import dnc
from campaigns.clock import iso_z
from campaigns.intake import dnc_file
from campaigns.lifecycle import get_campaign
from campaigns.models import DncEntry
from campaigns.phones import ANY_NUMBER_TYPE, PhoneRejected, normalize

api = Api("dnc", "Do-not-call lists: numbers that are never dialled.")

MAX_DNC_UPLOAD_BYTES = 64 * 1024**2
# Uploads up to this size stay in memory while they are imported; larger ones go to a temp file.
SPOOL_BYTES = 8 * 1024**2

DNC_ENTRY = api.schema(
    "DncEntry",
    {
        "type": "object",
        "required": ["phone_number"],
        "properties": {
            "phone_number": {"type": "string"},
            "campaign_id": {"type": ["string", "null"]},
            "reason": {"type": ["string", "null"]},
            "created_at": {"type": ["string", "null"], "format": "date-time"},
        },
    },
)
DNC_ADD = api.schema(
    "DncAdd",
    {
        "type": "object",
        "required": ["phone_number"],
        "additionalProperties": False,
        "properties": {
            "phone_number": {"type": "string", "minLength": 1, "maxLength": 64},
            "campaign_id": {"type": ["string", "null"], "maxLength": 32},
            "reason": {"type": ["string", "null"], "maxLength": 200},
            "default_region": {"type": "string", "minLength": 2, "maxLength": 2},
        },
    },
)
DNC_IMPORT_REPORT = api.schema(
    "DncImportReport",
    {
        "type": "object",
        "properties": {
            "rows": {"type": "integer"},
            "added": {"type": "integer"},
            "already_listed": {"type": "integer"},
            "rejected": {"type": "integer"},
            "errors": {"type": "array", "items": {"type": "object"}},
        },
    },
)
SCOPE_QUERY = {
    "campaign_id": {"type": "string", "maxLength": 32},
    "default_region": {"type": "string", "minLength": 2, "maxLength": 2, "default": "US"},
}


def entry_json(entry: DncEntry) -> dict[str, Any]:
    return {
        "phone_number": entry.phone_number,
        "campaign_id": entry.campaign_id,
        "reason": entry.reason,
        "created_at": iso_z(entry.created_at),
    }


def _e164(raw: str, region: str) -> str:
    try:
        return normalize(raw, region, ANY_NUMBER_TYPE).e164
    except PhoneRejected as exc:
        raise ApiError(
            422, "invalid_number", f"not a valid phone number ({exc.reason})", {"value": raw}
        ) from exc


async def _check_campaign(request: web.Request, campaign_id: str | None) -> None:
    if campaign_id is not None:
        async with request.app[READ_SESSIONMAKER]() as session:
            await get_campaign(session, campaign_id)


@api.post(
    "/api/v1/dnc",
    summary="Add a number (JSON) or a CSV of numbers (text/csv, column phone_number)",
    body=DNC_ADD,
    other_bodies={"text/csv": {"type": "string"}},
    query=SCOPE_QUERY,
    responses={200: DNC_IMPORT_REPORT, 201: DNC_ENTRY},
)
async def add(request: web.Request) -> web.Response:
    if request.content_type == "text/csv":
        return await _import_csv(request)
    body = body_of(request)
    if body is None:
        raise ApiError(415, "unsupported_media_type", "send JSON or text/csv")
    campaign_id = body.get("campaign_id")
    await _check_campaign(request, campaign_id)
    e164 = _e164(body["phone_number"], body.get("default_region", "US"))
    async with request.app[SESSIONMAKER].begin() as session:
        created = await dnc.add(session, e164, campaign_id, body.get("reason"))
    entry = {"phone_number": e164, "campaign_id": campaign_id, "reason": body.get("reason")}
    return web.json_response(entry, status=201 if created else 200)


async def _import_csv(request: web.Request) -> web.Response:
    query = query_of(request)
    campaign_id = query.get("campaign_id")
    await _check_campaign(request, campaign_id)
    # The whole upload is on hand before the first row is stored: a body cut short or past the
    # limit stores nothing, and the import itself is one transaction.
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        await spool_body(request, spool, MAX_DNC_UPLOAD_BYTES)
        spool.seek(0)
        try:
            report = await dnc_file.import_file(
                request.app[SESSIONMAKER],
                spool,  # type: ignore[arg-type]
                campaign_id=campaign_id,
                default_region=query["default_region"],
            )
        except dnc_file.DncFileRefused as exc:
            raise ApiError(422, "csv_refused", str(exc)) from exc
    return web.json_response(report.to_dict())


@api.get(
    "/api/v1/dnc",
    summary="List do-not-call entries (global by default, or one campaign's)",
    query={**PAGE_QUERY, "campaign_id": {"type": "string", "maxLength": 32}},
    responses={200: Response({"type": "array", "items": DNC_ENTRY}, headers=PAGE_HEADERS)},
)
async def list_entries(request: web.Request) -> web.Response:
    query = query_of(request)
    page, per_page = query["page"], query["per_page"]
    campaign_id = query.get("campaign_id")
    where = (
        DncEntry.campaign_id.is_(None)
        if campaign_id is None
        else DncEntry.campaign_id == campaign_id
    )
    async with request.app[READ_SESSIONMAKER]() as session:
        order = (DncEntry.id,)
        return await page_of(session, DncEntry, [where], order, entry_json, page, per_page)


@api.delete(
    "/api/v1/dnc/{phone_number}",
    summary="Take a number off a do-not-call list",
    query=SCOPE_QUERY,
    responses={204: Response(description="Removed"), 404: None},
)
async def remove(request: web.Request) -> web.Response:
    query = query_of(request)
    e164 = _e164(request.match_info["phone_number"], query["default_region"])
    async with request.app[SESSIONMAKER].begin() as session:
        removed = await dnc.remove(session, e164, query.get("campaign_id"))
    if not removed:
        raise ApiError(404, "not_found", "that number is not on this list")
    return web.Response(status=204)


DNC_CHECK = api.schema(
    "DncCheck",
    {
        "type": "object",
        "required": ["phone_number", "listed", "entries"],
        "properties": {
            "phone_number": {"type": "string", "description": "the number in E.164"},
            "listed": {"type": "boolean"},
            "entries": {"type": "array", "items": DNC_ENTRY},
        },
    },
)


@api.get(
    "/api/v1/dnc/{phone_number}",
    summary="Is a number listed? The global list, or what blocks one campaign (?campaign_id=)",
    description="With `campaign_id`, both the global list and the campaign's own count, as they "
    "do when the campaign dials.",
    query=SCOPE_QUERY,
    responses={200: DNC_CHECK},
)
async def check(request: web.Request) -> web.Response:
    query = query_of(request)
    e164 = _e164(request.match_info["phone_number"], query["default_region"])
    campaign_id = query.get("campaign_id")
    await _check_campaign(request, campaign_id)
    scope = DncEntry.campaign_id.is_(None)
    if campaign_id is not None:
        scope = or_(scope, DncEntry.campaign_id == campaign_id)
    async with request.app[READ_SESSIONMAKER]() as session:
        rows = await session.scalars(
            select(DncEntry).where(DncEntry.phone_number == e164, scope).order_by(DncEntry.id)
        )
        entries = [entry_json(entry) for entry in rows]
    body = {"phone_number": e164, "listed": bool(entries), "entries": entries}
    return web.json_response(body)
