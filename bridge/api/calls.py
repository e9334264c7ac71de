"""Single calls and reminders requested by other systems."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select

from bridge.api.auth import caller_of
from bridge.api.campaign_schemas import ATTEMPT
from bridge.api.errors import ApiError
from bridge.api.openapi import Api, body_of
from bridge.api.representations import attempt_json, contact_json
from bridge.app_keys import READ_SESSIONMAKER, SESSIONMAKER
from campaigns.clock import iso_z
from campaigns.models import Attempt, Contact
from campaigns.single_calls import Idempotency, place_single_call

api = Api("calls", "Single calls and reminders.")

CALL_REQUEST = api.schema(
    "CallRequest",
    {
        "type": "object",
        "required": ["to"],
        "additionalProperties": False,
        "properties": {
            "to": {"type": "string", "minLength": 1, "maxLength": 64},
            "agent_id": {"type": ["string", "null"], "maxLength": 200},
            "from_number": {"type": ["string", "null"], "maxLength": 32},
            "dynamic_variables": {
                "type": "object",
                "additionalProperties": {"type": ["string", "number", "boolean"]},
            },
            "call_at": {
                "type": ["string", "null"],
                "description": "ISO 8601; with an offset, or naive for the recipient's own time",
                "maxLength": 64,
            },
            "campaign_id": {"type": ["string", "null"], "maxLength": 32},
        },
    },
)
CALL = api.schema(
    "Call",
    {
        "type": "object",
        "required": ["id", "campaign_id", "phone_number", "state"],
        "properties": {
            "id": {"type": "string"},
            "campaign_id": {"type": "string"},
            "phone_number": {"type": "string"},
            "state": {"type": "string"},
            "disposition": {"type": ["string", "null"]},
            "call_at": {"type": ["string", "null"], "format": "date-time"},
            "attempts": {"type": "array", "items": ATTEMPT},
        },
    },
)
MAX_IDEMPOTENCY_KEY = 200


def call_json(contact: Contact, attempts: list[Attempt]) -> dict[str, Any]:
    return {
        **contact_json(contact),
        "campaign_id": contact.campaign_id,
        "call_at": iso_z(contact.call_at),
        "attempts": [attempt_json(a) for a in attempts],
    }


@api.post(
    "/api/v1/calls",
    summary="Queue one call (Idempotency-Key header: a repeat returns the same call)",
    description=(
        "With an `Idempotency-Key` header (at most 200 characters), the same request again "
        "with the same key answers the call the first one made (200) instead of a second call. "
        "A key belongs to the API key that sent it (another API key's same key is another key) "
        "and to its request: the same key with another body (compared as canonical JSON) is "
        "422 `idempotency_key_reused`. A key is remembered as long as its call is stored."
    ),
    body=CALL_REQUEST,
    responses={200: CALL, 201: CALL},
)
async def create(request: web.Request) -> web.Response:
    body = body_of(request)
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and len(key) > MAX_IDEMPOTENCY_KEY:
        raise ApiError(400, "bad_idempotency_key", "Idempotency-Key is at most 200 characters")
    idempotency = Idempotency(caller_of(request).id, key, body) if key is not None else None
    contact, created = await place_single_call(
        request.app[SESSIONMAKER],
        to=body["to"],
        agent_id=body.get("agent_id"),
        from_number=body.get("from_number"),
        dynamic_variables=body.get("dynamic_variables") or {},
        call_at=body.get("call_at"),
        campaign_id=body.get("campaign_id"),
        idempotency=idempotency,
    )
    return web.json_response(call_json(contact, []), status=201 if created else 200)


@api.get("/api/v1/calls/{call_id}", summary="A call with its attempts", responses={200: CALL})
async def read(request: web.Request) -> web.Response:
    call_id = request.match_info["call_id"]
    async with request.app[READ_SESSIONMAKER]() as session:
        contact = await session.get(Contact, call_id)
        if contact is None:
            raise ApiError(404, "not_found", f"no call {call_id!r}")
        attempts = list(
            await session.scalars(
                select(Attempt).where(Attempt.contact_id == call_id).order_by(Attempt.number)
            )
        )
    return web.json_response(call_json(contact, attempts))
