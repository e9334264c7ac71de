"""Read-only JSON the dashboard needs beyond the public API, under /api/v1/dashboard.

These routes sit under /api, so the bearer-key middleware guards them like every other API route.
The one that writes nothing but a cookie, ``POST /session``, trades the key for a stream ticket;
it needs only ``read``, so a read-only key can watch the dashboard. Its answer names the key's
scope, so the page offers only what the key may do (the API refuses the rest all the same).
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bridge.api.auth import caller_of
from bridge.api.bodies import spool_body
from bridge.api.campaign_schemas import IMPORT_REPORT
from bridge.api.errors import ApiError
from bridge.api.openapi import Api, query_of
from bridge.app_keys import DASHBOARD_HUB, READ_SESSIONMAKER
from bridge.dashboard import queries
from bridge.dashboard.session import COOKIE, STREAM_PATH, TICKET_SECONDS
from campaigns.api_key_store import READ, SCOPES, WRITE
from campaigns.clock import iso_z
from campaigns.intake.contacts import dry_run
from campaigns.lifecycle import get_campaign
from campaigns.models import Contact

api = Api("dashboard", "What the web dashboard reads (the page itself is at /)")
routes = api.routes

# The preview remembers every accepted number (about 100 bytes each): bounded, unlike the import.
MAX_PREVIEW_BYTES = 100 * 1024**2
SPOOL_BYTES = 8 * 1024**2
MAX_PER_PAGE = 200

_COUNTS = {
    "type": "object",
    "required": ["contacts", "done", "pending", "in_progress", "live_calls", "dispositions"],
    "properties": {
        "contacts": {"type": "integer"},
        "done": {"type": "integer"},
        "pending": {"type": "integer"},
        "in_progress": {"type": "integer"},
        "live_calls": {"type": "integer"},
        "dispositions": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
}
# The newest rows of a campaign page's panel, capped; "more" says older ones exist.
_PANEL = {
    "type": "object",
    "required": ["items", "more"],
    "properties": {
        "items": {"type": "array", "items": {"type": "object"}},
        "more": {"type": "boolean"},
    },
}
SUMMARY = api.schema(
    "DashboardCampaign",
    {
        "type": "object",
        "required": ["id", "name", "status", "next_call_at", "counts"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "status": {"type": "string"},
            "next_call_at": {"type": ["string", "null"]},
            "counts": _COUNTS,
        },
    },
)
VIEW = api.schema(
    "DashboardCampaignView",
    {
        "allOf": [SUMMARY],
        "type": "object",
        "required": ["live_calls", "calls_per_minute", "policy", "attention", "follow_ups"],
        "properties": {
            "live_calls": {"type": "array", "items": {"type": "object"}},
            "policy": {
                "type": "object",
                "description": "What the campaign's calls obey, with the same facts in words",
                "required": ["timezone", "windows_read_in", "calling_periods", "retry", "words"],
                "properties": {
                    "timezone": {"type": "string"},
                    "windows_read_in": {"enum": ["recipient"]},
                    "calling_periods": {"type": "array", "items": {"type": "object"}},
                    "rule_set": {"type": ["string", "null"]},
                    "retry": {"type": "object"},
                    "words": {"type": "object"},
                },
            },
            "outbound_campaign": {
                "type": "boolean",
                "description": "Created through the outbound-campaigns API",
            },
            "attention": _PANEL,
            "follow_ups": _PANEL,
            "calls_per_minute": {
                "type": "object",
                "required": ["minutes"],
                "properties": {
                    "minutes": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["minute", "calls"],
                            "properties": {
                                "minute": {"type": "string"},
                                "calls": {"type": "integer"},
                            },
                        },
                    }
                },
            },
        },
    },
)
CONTACT = api.schema(
    "DashboardContact",
    {
        "type": "object",
        "required": ["id", "phone_number", "state", "disposition", "attempts"],
        "properties": {
            "id": {"type": "string"},
            "phone_number": {"type": "string"},
            "external_id": {"type": ["string", "null"]},
            "state": {"type": "string"},
            "disposition": {"type": ["string", "null"]},
            "attempts": {"type": "integer"},
            "calls": {"type": "array", "items": {"type": "object"}},
        },
    },
)


@api.post(
    "/api/v1/dashboard/session",
    summary="Trade the API key for a stream ticket (an HttpOnly cookie for /dashboard/stream)",
    responses={
        200: {
            "type": "object",
            "required": ["expires_at", "ttl_seconds", "stream", "scope"],
            "properties": {
                "expires_at": {"type": "string"},
                "ttl_seconds": {"type": "integer"},
                "stream": {"type": "string"},
                "scope": {
                    "type": "string",
                    "enum": list(SCOPES),
                    "description": "The key's scope: what the page may offer",
                },
            },
        }
    },
    scope=READ,
)
async def open_session(request: web.Request) -> web.Response:
    ticket, expires = request.app[DASHBOARD_HUB].tickets.issue()
    response = web.json_response(
        {
            "expires_at": iso_z(datetime.fromtimestamp(expires, UTC)),
            "ttl_seconds": TICKET_SECONDS,
            "stream": STREAM_PATH,
            "scope": caller_of(request).scope,
        }
    )
    response.set_cookie(
        COOKIE,
        ticket,
        max_age=TICKET_SECONDS,
        path=STREAM_PATH,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@api.delete(
    "/api/v1/dashboard/session",
    summary="Forget the stream ticket",
    responses={200: {"type": "object", "properties": {"closed": {"type": "boolean"}}}},
    scope=READ,
)
async def close_session(request: web.Request) -> web.Response:
    response = web.json_response({"closed": True})
    response.del_cookie(COOKIE, path=STREAM_PATH)
    return response


@api.get(
    "/api/v1/dashboard/campaigns",
    summary="The newest campaigns with their progress, as the campaign list shows them",
    responses={
        200: {
            "type": "object",
            "required": ["campaigns", "total"],
            "properties": {
                "campaigns": {"type": "array", "items": SUMMARY},
                "total": {"type": "integer"},
            },
        }
    },
)
async def campaigns(request: web.Request) -> web.Response:
    async with request.app[READ_SESSIONMAKER]() as session:
        return web.json_response(await queries.campaign_summaries(session))


@api.get(
    "/api/v1/dashboard/campaigns/{campaign_id}",
    summary=(
        "One campaign as its page shows it: progress, live calls, calls per minute, its policy, "
        "attention items and follow-up requests"
    ),
    responses={200: VIEW},
)
async def campaign(request: web.Request) -> web.Response:
    async with request.app[READ_SESSIONMAKER]() as session:
        found = await get_campaign(session, request.match_info["campaign_id"])
        return web.json_response(await queries.campaign_view(session, found))


@api.get(
    "/api/v1/dashboard/campaigns/{campaign_id}/contacts",
    summary="Contacts of a campaign: search by number or external id, filter, page",
    query={
        "q": {"type": "string", "maxLength": 100},
        "disposition": {"type": "string", "maxLength": 32},
        "state": {"type": "string", "maxLength": 32},
        "page": {"type": "integer", "minimum": 1, "maximum": 10**9, "default": 1},
        "per_page": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE, "default": 25},
    },
    responses={
        200: {
            "type": "object",
            "required": ["total", "page", "per_page", "contacts"],
            "properties": {
                "total": {"type": "integer"},
                "page": {"type": "integer"},
                "per_page": {"type": "integer"},
                "contacts": {"type": "array", "items": CONTACT},
            },
        }
    },
)
async def contacts(request: web.Request) -> web.Response:
    query = query_of(request)
    page, per_page = query["page"], query["per_page"]
    async with request.app[READ_SESSIONMAKER]() as session:
        found = await get_campaign(session, request.match_info["campaign_id"])
        total, rows = await queries.contacts_page(
            session,
            found.id,
            query=query.get("q", ""),
            disposition=query.get("disposition", ""),
            state=query.get("state", ""),
            page=page,
            per_page=per_page,
        )
    body: dict[str, Any] = {"total": total, "page": page, "per_page": per_page, "contacts": rows}
    return web.json_response(body)


@api.get(
    "/api/v1/dashboard/contacts/{contact_id}",
    summary="One contact with all its calls (status, durations, transcript summary)",
    responses={200: CONTACT},
)
async def contact(request: web.Request) -> web.Response:
    async with request.app[READ_SESSIONMAKER]() as session:
        found = await session.get(Contact, request.match_info["contact_id"])
        if found is None:
            raise ApiError(404, "not_found", f"no contact {request.match_info['contact_id']!r}")
        body = queries.contact_json(found)
        # "attempts" stays the count, as in the list; the attempts themselves are the calls.
        body["calls"] = await queries.contact_attempts(session, found)
    return web.json_response(body)


@api.post(
    "/api/v1/dashboard/intake-preview",
    summary="The intake report of a CSV, before anything is stored",
    other_bodies={"text/csv": {"type": "string"}},
    body_required=False,
    query={
        "default_region": {"type": "string", "default": "US"},
        "phone_column": {"type": "string", "maxLength": 200, "default": "phone_number"},
    },
    responses={200: IMPORT_REPORT},
    # Stores nothing, but it is the first step of creating a campaign, and costs a full parse.
    scope=WRITE,
)
async def intake_preview(request: web.Request) -> web.Response:
    """The intake report a CSV would get, before any campaign or contact is stored."""
    query = query_of(request)
    region = query["default_region"].strip().upper()
    if len(region) != 2 or not region.isalpha():
        raise ApiError(422, "invalid_field", "default_region must be a two-letter region code")
    phone_column = query["phone_column"] or "phone_number"
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        await spool_body(request, spool, MAX_PREVIEW_BYTES)
        spool.seek(0)
        report = await asyncio.to_thread(
            dry_run,
            spool,  # type: ignore[arg-type]
            default_region=region,
            phone_column=phone_column,
        )
    return web.json_response(report.to_dict())
