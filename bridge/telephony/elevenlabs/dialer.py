"""What every call ElevenLabs places itself shares: the outbound-call request, its answer, and
the classification of its errors."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from bridge.telephony.elevenlabs.client import AgentApiError, ElevenLabsClient, initiation_data
from bridge.telephony.port import ConversationStarted
from campaigns.dialing import DialAmbiguous, DialRefused, DialRequest, ProviderCall


class AgentPlacedDialer:
    """Places calls that ElevenLabs dials itself, for the agent it connects them to.

    The request and the answer's handling are shared; each telephony ElevenLabs dials over says
    where to post, what telephony settings to send and which of the answer's ids names the call.
    """

    path: str = ""

    def __init__(
        self,
        client: ElevenLabsClient,
        *,
        timeout_seconds: float,
        on_conversation: ConversationStarted | None = None,
    ) -> None:
        self._client = client
        self._timeout = timeout_seconds
        self._on_conversation = on_conversation

    def telephony_config(self, request: DialRequest) -> dict[str, Any]:
        return {"ringing_timeout_secs": request.ring_timeout_seconds}

    def variables(self, request: DialRequest) -> dict[str, Any]:
        """The dynamic variables sent with the call: the contact's."""
        return request.dynamic_variables

    def call_id(self, answer: dict[str, Any]) -> str | None:
        """The provider call id to store for the placed call."""
        conversation_id = answer.get("conversation_id")
        return str(conversation_id) if conversation_id else None

    async def place_call(self, request: DialRequest) -> str:
        if not request.agent_id or not request.agent_phone_number_id:
            raise DialRefused(
                f"{request.agent_connection} calls need the campaign's agent_id and "
                "agent_phone_number_id",
                code="agent_not_configured",
            )
        body = {
            "agent_id": request.agent_id,
            "agent_phone_number_id": request.agent_phone_number_id,
            "to_number": request.to,
            "conversation_initiation_client_data": initiation_data(
                self.variables(request), request.agent_override, request.user_id
            ),
            "telephony_call_config": self.telephony_config(request),
        }
        try:
            answer = await asyncio.wait_for(
                self._client.outbound_call(self.path, body), self._timeout
            )
        except TimeoutError as exc:
            raise DialAmbiguous("ElevenLabs outbound-call timed out") from exc
        except AgentApiError as exc:
            raise _classify(exc) from exc
        call_id = self.call_id(answer)
        conversation_id = answer.get("conversation_id")
        if not answer.get("success", True) or not call_id:
            raise DialRefused(
                str(answer.get("message") or "ElevenLabs did not place the call"),
                code="agent_refused",
            )
        if conversation_id and self._on_conversation is not None:
            await self._on_conversation(request.attempt_id, str(conversation_id))
        return call_id

    def can_list_calls(self, agent_connection: str) -> bool:
        # ElevenLabs lists conversations by agent, not by the number called: a call it placed
        # cannot be found from its number. (Where it dials over the carrier, the carrier's list
        # finds the call: the router asks the carrier then.)
        return False

    async def find_calls(self, to: str, since: datetime) -> list[ProviderCall]:
        return []

    async def fetch_call(self, call_id: str) -> ProviderCall | None:
        return None

    async def hang_up(self, call_id: str) -> None:
        return None


def _classify(exc: AgentApiError) -> Exception:
    if not exc.sent:
        return DialRefused(str(exc), code="agent_unreachable", retryable=True)
    if exc.status == 429:
        return DialRefused(str(exc), code="429", retryable=True)
    if exc.status is not None and 400 <= exc.status < 500:
        return DialRefused(str(exc), code=f"elevenlabs_{exc.status}")
    # A 5xx or a broken answer may come after the call was placed.
    return DialAmbiguous(str(exc))
