"""Named contact lists (released by recurring campaigns) and the firings that released them."""

from __future__ import annotations

import tempfile
from typing import Any

from aiohttp import web
from sqlalchemy import select

from bridge.api.bodies import spool_body
from bridge.api.errors import ApiError
from bridge.api.openapi import Api, query_of
from bridge.app_keys import READ_SESSIONMAKER, SESSIONMAKER
from campaigns import recurring
from campaigns.clock import iso_z
from campaigns.lifecycle import get_campaign
from campaigns.models import ScheduleFiring

api = Api("lists", "Named contact lists for recurring campaigns, and their firings.")

MAX_LIST_BYTES = 256 * 1024**2

LIST_REPORT = api.schema(
    "ListReport",
    {
        "type": "object",
        "properties": {
            "rows": {"type": "integer"},
            "accepted": {"type": "integer"},
            "rejected": {"type": "integer"},
            "errors": {"type": "array", "items": {"type": "object"}},
        },
    },
)
LIST_ENTRY = api.schema(
    "ListEntry",
    {
        "type": "object",
        "properties": {
            "phone_number": {"type": "string"},
            "external_id": {"type": ["string", "null"]},
            "dynamic_variables": {"type": "object"},
        },
    },
)
FIRING = api.schema(
    "Firing",
    {
        "type": "object",
        "properties": {
            "fire_at": {"type": "string", "format": "date-time"},
            "contacts": {"type": "integer"},
            "released_at": {"type": ["string", "null"], "format": "date-time"},
        },
    },
)


def _name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not (1 <= len(name) <= 100) or not all(c.isalnum() or c in "_.-" for c in name):
        raise ApiError(400, "bad_list_name", "list names are 1-100 letters, digits, _ . or -")
    return name


@api.put(
    "/api/v1/lists/{name}",
    summary="Replace a named list with a CSV's valid rows (phone_number, id, variables)",
    body={"type": "string"},
    body_content_type="text/csv",
    query={
        "default_region": {"type": "string", "minLength": 2, "maxLength": 2, "default": "US"},
        "phone_column": {"type": "string", "maxLength": 100, "default": "phone_number"},
    },
    responses={200: LIST_REPORT},
)
async def replace(request: web.Request) -> web.Response:
    name = _name(request)
    query = query_of(request)
    with tempfile.SpooledTemporaryFile(max_size=8 * 1024**2) as spool:
        await spool_body(request, spool, MAX_LIST_BYTES)
        spool.seek(0)
        report = await recurring.replace_list(
            request.app[SESSIONMAKER],
            name,
            spool,  # type: ignore[arg-type]
            default_region=query["default_region"],
            phone_column=query["phone_column"],
        )
    return web.json_response(report.to_dict())


@api.get(
    "/api/v1/lists/{name}",
    summary="A named list's entries",
    responses={200: {"type": "array", "items": LIST_ENTRY}},
)
async def read(request: web.Request) -> web.Response:
    name = _name(request)
    async with request.app[READ_SESSIONMAKER]() as session:
        entries = await recurring.list_entries(session, name)
    body: list[dict[str, Any]] = [
        {
            "phone_number": e.phone_number,
            "external_id": e.external_id,
            "dynamic_variables": e.dynamic_variables or {},
        }
        for e in entries
    ]
    return web.json_response(body)


@api.get(
    "/api/v1/campaigns/{campaign_id}/firings",
    summary="The batches a recurring campaign has released, newest first",
    responses={200: {"type": "array", "items": FIRING}},
)
async def firings(request: web.Request) -> web.Response:
    async with request.app[READ_SESSIONMAKER]() as session:
        campaign = await get_campaign(session, request.match_info["campaign_id"])
        rows = await session.scalars(
            select(ScheduleFiring)
            .where(ScheduleFiring.campaign_id == campaign.id)
            .order_by(ScheduleFiring.fire_at.desc())
            .limit(1000)
        )
        body = [
            {
                "fire_at": iso_z(f.fire_at),
                "contacts": f.contacts,
                "released_at": iso_z(f.released_at),
            }
            for f in rows
        ]
    return web.json_response(body)
