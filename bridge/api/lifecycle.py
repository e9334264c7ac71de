"""Pause, resume and cancel a campaign; take a contact out of one."""

from __future__ import annotations

import logging

from aiohttp import web

from bridge.api.campaign_schemas import CAMPAIGN, CONTACT
from bridge.api.openapi import Api, query_of
from bridge.api.representations import campaign_json, contact_json
from bridge.app_keys import DIALER, SESSIONMAKER
from campaigns import lifecycle

log = logging.getLogger(__name__)

api = Api("lifecycle", "Pause, resume and cancel campaigns; remove contacts.")


@api.post(
    "/api/v1/campaigns/{campaign_id}/pause",
    summary="Stop new dials; live calls finish",
    responses={200: CAMPAIGN},
)
async def pause(request: web.Request) -> web.Response:
    campaign = await lifecycle.pause(request.app[SESSIONMAKER], request.match_info["campaign_id"])
    return web.json_response(campaign_json(campaign))


@api.post(
    "/api/v1/campaigns/{campaign_id}/resume",
    summary="Dial again after a pause",
    responses={200: CAMPAIGN},
)
async def resume(request: web.Request) -> web.Response:
    campaign = await lifecycle.resume(request.app[SESSIONMAKER], request.match_info["campaign_id"])
    return web.json_response(campaign_json(campaign))


@api.post(
    "/api/v1/campaigns/{campaign_id}/cancel",
    summary="Stop for good: queued contacts become cancelled",
    description="Live calls finish and are recorded, or are hung up with `hangup=true`.",
    query={"hangup": {"type": "boolean", "default": False}},
    responses={200: CAMPAIGN},
)
async def cancel(request: web.Request) -> web.Response:
    campaign, live_calls = await lifecycle.cancel(
        request.app[SESSIONMAKER], request.match_info["campaign_id"]
    )
    if query_of(request)["hangup"]:
        dialer = request.app[DIALER]
        for call_id in live_calls:
            try:
                await dialer.hang_up(call_id)
            except Exception:
                # The call then ends on its own and its callbacks are recorded as usual.
                log.exception("could not hang up %s", call_id)
    return web.json_response(campaign_json(campaign))


@api.delete(
    "/api/v1/campaigns/{campaign_id}/contacts/{contact_id}",
    summary="Remove a contact: it is never dialled again",
    responses={200: CONTACT},
)
async def remove_contact(request: web.Request) -> web.Response:
    contact = await lifecycle.remove_contact(
        request.app[SESSIONMAKER],
        request.match_info["campaign_id"],
        request.match_info["contact_id"],
    )
    return web.json_response(contact_json(contact))
