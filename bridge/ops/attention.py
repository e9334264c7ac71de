"""What an operator has to fix: the attention items (e.g. from the circuit breaker), over REST."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select

from bridge.api.errors import ApiError
from bridge.api.openapi import Api, nullable
from bridge.app_keys import READ_SESSIONMAKER
from campaigns.models import AttentionItem, Campaign, CampaignStatus

api = Api("attention", "Problems an operator has to fix, e.g. a campaign paused by the breaker.")

ITEM = api.schema(
    "AttentionItem",
    {
        "type": "object",
        "required": ["id", "campaign_id", "kind", "message", "remedy", "open"],
        "properties": {
            "id": {"type": "string"},
            "campaign_id": nullable({"type": "string"}),
            "kind": {"type": "string", "description": "circuit_breaker, agent_audio_format"},
            "code": nullable({"type": "string", "description": "the provider's error code"}),
            "message": {"type": "string", "description": "what is wrong"},
            "remedy": {"type": "string", "description": "how to fix it"},
            "details": {"type": "object"},
            "created_at": {"type": "string", "format": "date-time"},
            "resolved_at": nullable({"type": "string", "format": "date-time"}),
            "open": {
                "type": "boolean",
                "description": "false once the campaign was resumed (or ended)",
            },
        },
    },
)
ITEMS = api.schema(
    "AttentionItems",
    {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": ITEM}},
    },
)


def item_json(item: AttentionItem, campaign_status: str | None) -> dict[str, Any]:
    return {
        "id": item.id,
        "campaign_id": item.campaign_id,
        "kind": item.kind,
        "code": item.code,
        "message": item.message,
        "remedy": item.remedy,
        "details": item.details,
        "created_at": item.created_at.isoformat(),
        "resolved_at": item.resolved_at.isoformat() if item.resolved_at else None,
        # Resuming the campaign is the operator saying it is fixed.
        "open": item.resolved_at is None and campaign_status == CampaignStatus.PAUSED,
    }


@api.get(
    "/api/v1/attention",
    summary="Open attention items of every campaign, newest first",
    responses={200: ITEMS},
)
async def open_items(request: web.Request) -> web.Response:
    async with request.app[READ_SESSIONMAKER]() as session:
        rows = (
            await session.execute(
                select(AttentionItem, Campaign.status)
                .join(Campaign, Campaign.id == AttentionItem.campaign_id)
                .where(
                    AttentionItem.resolved_at.is_(None),
                    Campaign.status == CampaignStatus.PAUSED,
                )
                .order_by(AttentionItem.created_at.desc())
                .limit(500)
            )
        ).all()
    return web.json_response({"items": [item_json(item, status) for item, status in rows]})


@api.get(
    "/api/v1/campaigns/{campaign_id}/attention",
    summary="A campaign's attention items, open and closed, newest first",
    responses={200: ITEMS, 404: None},
)
async def campaign_items(request: web.Request) -> web.Response:
    campaign_id = request.match_info["campaign_id"]
    async with request.app[READ_SESSIONMAKER]() as session:
        campaign = await session.get(Campaign, campaign_id)
        if campaign is None:
            raise ApiError(404, "not_found", f"no campaign {campaign_id!r}")
        items = list(
            await session.scalars(
                select(AttentionItem)
                .where(AttentionItem.campaign_id == campaign_id)
                .order_by(AttentionItem.created_at.desc())
            )
        )
    return web.json_response({"items": [item_json(item, campaign.status) for item in items]})
