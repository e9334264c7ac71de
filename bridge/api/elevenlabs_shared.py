"""What the ElevenLabs-compatible APIs (batch_calling, outbound_campaigns) share: the client data a
recipient carries, caller ids, unix times, refused recipients, and the creation of a campaign from
the recipients a submit names."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from bridge.app_keys import SCHEDULER, SESSIONMAKER, SETTINGS
from bridge.telephony.factory import agent_connections
from campaigns.clock import utcnow
from campaigns.contact_list import AgentOptions, add_parsed, set_agent_options
from campaigns.editing import delete_draft
from campaigns.intake.report import ImportReport, RowError
from campaigns.intake.rows import ParsedBatch
from campaigns.lifecycle import CampaignSpec, create_campaign, request_start
from campaigns.models import Campaign, CampaignStatus
from campaigns.phones import ANY_NUMBER_TYPE, PhoneRejected, normalize

# A null value is accepted, as ElevenLabs accepts it, and passed on to the agent as null.
VARIABLES = {
    "type": "object",
    "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
}
CLIENT_DATA = {
    "type": ["object", "null"],
    "properties": {
        "dynamic_variables": {"anyOf": [VARIABLES, {"type": "null"}]},
        # Passed to the agent as given; the agent's settings decide whether it may apply them.
        "conversation_config_override": {"type": ["object", "null"]},
        "user_id": {"type": ["string", "null"], "maxLength": 200},
    },
}


def unix_seconds(value: datetime | None) -> int:
    return int(value.timestamp()) if value is not None else 0


def e164_or_none(value: str | None) -> str | None:
    if not value or not value.startswith("+"):
        return None
    try:
        # A caller id, not a number to call: any type will do (Twilio's test caller ids are
        # personal numbers).
        return normalize(value, "US", ANY_NUMBER_TYPE).e164
    except PhoneRejected:
        return None


def recipient_error(error: RowError) -> dict[str, Any]:
    """A refused recipient by its 0-based position, with the reason (and type) it was refused."""
    details = error.to_dict()
    del details["row"]
    return {"recipient": error.row - 1, **details}


def client_variables(client_data: dict[str, Any] | None) -> dict[str, Any]:
    return dict((client_data or {}).get("dynamic_variables") or {})


def agent_options(
    client_data: dict[str, Any] | None, call_options: dict[str, Any] | None = None
) -> AgentOptions:
    data = client_data or {}
    return AgentOptions(
        agent_override=data.get("conversation_config_override") or None,
        user_id=data.get("user_id") or None,
        call_options=call_options or None,
    )


# ElevenLabs' twilio_machine_detection modes as Twilio's MachineDetection values.
MACHINE_DETECTION_MODES = {"enable": "Enable", "detect_message_end": "DetectMessageEnd"}


def recording_option(config: dict[str, Any] | None, enabled: bool | None = None) -> dict[str, Any]:
    """The call option that records the call, when the request asks for it."""
    if enabled or (config or {}).get("twilio_call_recording_enabled"):
        return {"record": True}
    return {}


def default_caller_id(request: web.Request) -> str:
    """The number a batch without a phone number of its own calls from: the service's default
    caller id (ElevenLabs always names the batch's phone number)."""
    return request.app[SETTINGS].from_number or ""


async def create_and_start(
    request: web.Request,
    spec: CampaignSpec,
    parsed: ParsedBatch,
    recipients: list[dict[str, Any]],
    recording: dict[str, Any],
    write: Callable[[AsyncSession, str], Awaitable[None]],
) -> Campaign:
    """A campaign with the parsed recipients (each with its agent options, from the recipient it
    came from), what ``write`` adds to it in the same transaction, started (or scheduled).

    Nothing half-written: on any failure the campaign goes with whatever part of it was made,
    and the failure is raised again.
    """
    sm = request.app[SESSIONMAKER]
    campaign = await create_campaign(sm, spec, agent_connections(request.app))
    try:
        async with sm.begin() as session:
            await add_parsed(session, campaign.id, parsed, utcnow(), ImportReport())
            await set_agent_options(
                session,
                campaign.id,
                {
                    contact.e164: agent_options(
                        recipients[contact.row - 1].get("conversation_initiation_client_data"),
                        recording,
                    )
                    for contact in parsed.contacts
                },
            )
            await write(session, campaign.id)
        campaign = await request_start(sm, campaign.id)
    except BaseException:
        await delete_draft(sm, campaign.id)
        raise
    if campaign.status == CampaignStatus.SCHEDULED:
        assert campaign.start_at is not None
        request.app[SCHEDULER].schedule_campaign_start(campaign.id, campaign.start_at)
    return campaign
