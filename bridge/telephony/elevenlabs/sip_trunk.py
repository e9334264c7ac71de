"""ElevenLabs' SIP-trunk outbound call (`agent_connection` sip_trunk).

ElevenLabs places the call itself over the user's own SIP trunk, from a number imported into it
with that trunk (the campaign's agent_phone_number_id). No carrier of ours sees the call: it is
named by its ElevenLabs conversation id, its outcome comes from the post-call webhooks (the
transcription, or the call_initiation_failure of a call that never connected), and ElevenLabs'
GET Conversation says how a call whose webhook was lost ended. ElevenLabs cannot list calls by
number, so a create whose answer was lost is settled by its call's report, which names the
attempt in a dynamic variable (callbridge_attempt_id).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from bridge.telephony.elevenlabs import outcomes
from bridge.telephony.elevenlabs.client import AgentApiError
from bridge.telephony.elevenlabs.dialer import AgentPlacedDialer
from bridge.telephony.port import Connection, DialerParts
from campaigns.dialing import DialRequest, ProviderCall
from campaigns.models import Answerer

log = logging.getLogger(__name__)

NAME = "sip_trunk"
CONVERSATION_PREFIX = "conv_"
# GET Conversation's status, in the domain's call-status words, while the call is not over
# ("processing": over, but its report is still being made, so its outcome is not known yet).
LIVE_STATUS = {"initiated": "ringing", "in-progress": "in-progress", "processing": "in-progress"}
# phone_call.call_result of a conversation that failed, in the domain's words.
FAILED_STATUS = {"busy": "busy", "no_answer": "no-answer"}


class SipTrunkDialer(AgentPlacedDialer):
    path = "/v1/convai/sip-trunk/outbound-call"

    # telephony_call_config: only the ring timeout applies (its Twilio settings are ignored for
    # other providers), so the base class's is sent as it is.

    def variables(self, request: DialRequest) -> dict[str, Any]:
        # The call cannot be found from its number: its report names the attempt instead, so a
        # create whose answer was lost is still settled by the call's outcome.
        return {**request.dynamic_variables, outcomes.ATTEMPT_VARIABLE: request.attempt_id}

    def call_id(self, answer: dict[str, Any]) -> str | None:
        # The conversation id, not sip_call_id: it is what ElevenLabs can be asked about.
        conversation_id = answer.get("conversation_id")
        return str(conversation_id) if conversation_id else None

    async def fetch_call(self, call_id: str) -> ProviderCall | None:
        """How the call stands, told as the post-call webhooks would tell it: the restart sweep
        and the stale-call check may ask before those webhooks arrive, or after they were lost."""
        try:
            body = await asyncio.wait_for(self._client.conversation(call_id), self._timeout)
        except AgentApiError as exc:
            if exc.status == 404:
                return None
            raise
        metadata = body.get("metadata") or {}
        phone_call = metadata.get("phone_call") or {}
        result = str(phone_call.get("call_result") or "")
        status = str(body.get("status") or "")
        answered_by = None
        if status == "done":
            final = "completed"
            if result == "voicemail" or outcomes.voicemail_detected(body):
                answered_by = outcomes.AGENT_VOICEMAIL
        elif status == "failed":
            final = FAILED_STATUS.get(result, "failed")
        else:
            final = LIVE_STATUS.get(status, "in-progress")
        duration = metadata.get("call_duration_secs")
        return ProviderCall(
            call_id=call_id,
            to=str(phone_call.get("external_number") or ""),
            status=final,
            answered_by=answered_by,
            answerer=Answerer.MACHINE if answered_by else None,
            duration_seconds=int(duration) if isinstance(duration, int | float) else None,
        )

    async def find_calls(self, to: str, since: datetime) -> list[ProviderCall]:
        # ElevenLabs lists conversations by agent, not by number (can_list_calls is False): an
        # unanswered create waits for its call's post-call report instead.
        return []

    async def hang_up(self, call_id: str) -> None:
        # ElevenLabs offers no hang-up of a conversation: the call ends with the conversation.
        log.info("a sip_trunk call cannot be hung up from here; %s ends on its own", call_id)


def _dialer(parts: DialerParts) -> SipTrunkDialer:
    return SipTrunkDialer(
        parts.agents,
        timeout_seconds=parts.settings.provider_timeout_seconds,
        on_conversation=parts.on_conversation,
    )


CONNECTIONS = (
    Connection(
        NAME,
        provider=outcomes.PROVIDER,
        needs=("agent_id", "agent_phone_number_id"),
        # No carrier callback reaches us: the post-call report ends the call.
        ended_by_report=True,
        dialer=_dialer,
        owns_call=lambda call_id: call_id.startswith(CONVERSATION_PREFIX),
    ),
)
