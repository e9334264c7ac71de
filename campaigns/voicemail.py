"""What to do on reaching an answering machine: the campaign's voicemail policy."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns.models import Answerer, Attempt, AttemptStatus, Campaign, Contact

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


@dataclass(frozen=True)
class VoicemailAction:
    attempt_id: str
    call_id: str
    kind: str  # "hang_up" or "leave_message"
    message: str | None = None


def render(template: str, variables: dict[str, Any]) -> str:
    """Fill ``{{name}}`` placeholders with the contact's dynamic variables (unknown: empty)."""
    return _PLACEHOLDER.sub(lambda m: str(variables.get(m.group(1), "")), template)


async def action_for(
    sm: async_sessionmaker[AsyncSession], attempt_id: str | None, answerer: str | None
) -> VoicemailAction | None:
    """Decide, and record on the attempt, what the campaign wants done with a machine answer."""
    if not attempt_id or answerer not in Answerer.NOT_A_PERSON:
        return None
    async with sm.begin() as session:
        attempt = await session.get(Attempt, attempt_id, with_for_update=True)
        if (
            attempt is None
            or attempt.provider_call_id is None
            or attempt.voicemail_action is not None
            or attempt.status in AttemptStatus.TERMINAL
        ):
            return None
        campaign = await session.get(Campaign, attempt.campaign_id)
        contact = await session.get(Contact, attempt.contact_id)
        if campaign is None or contact is None:
            return None
        policy = campaign.voicemail_policy
        # Only once the greeting has ended can a message be heard after the beep.
        if policy == "leave_message" and answerer == Answerer.MACHINE_GREETING_OVER:
            attempt.voicemail_action = "message_left"
            message = render(campaign.voicemail_message or "", contact.dynamic_variables or {})
            return VoicemailAction(attempt.id, attempt.provider_call_id, "leave_message", message)
        if policy in ("hang_up", "leave_message"):
            # leave_message without a detected end of greeting: nobody would hear it.
            attempt.voicemail_action = "hung_up"
            return VoicemailAction(attempt.id, attempt.provider_call_id, "hang_up")
        return None  # "agent": the agent handles the machine itself


async def forget_action(sm: async_sessionmaker[AsyncSession], attempt_id: str) -> None:
    """The provider refused the action: the attempt ends as a plain voicemail."""
    async with sm.begin() as session:
        attempt = await session.get(Attempt, attempt_id, with_for_update=True)
        if attempt is not None:
            attempt.voicemail_action = None
