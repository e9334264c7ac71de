"""ElevenLabs' agents API: register-call TwiML, outbound calls it places itself, conversation URLs.

One client serves the ways a call reaches an agent: the TwiML handler asks it for register-call
TwiML, the media relay for a conversation URL, and the agent-placed dialers (native here: through
ElevenLabs' own Twilio integration) ask it to place calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp

from bridge.telephony.port import Connection, ConversationStarted, DialerParts
from campaigns.dialing import DialAmbiguous, DialRefused, DialRequest, ProviderCall
from campaigns.models import MachineDetection

log = logging.getLogger(__name__)

# Contact columns that ElevenLabs' own batch calling turns into overrides, not variables.
OVERRIDE_COLUMNS = ("language", "first_message", "system_prompt", "voice_id")

MACHINE_DETECTION_MODES = {
    MachineDetection.UNTIL_GREETING_ENDS: "detect_message_end",
    MachineDetection.DETECT: "enable",
}


class AgentApiError(Exception):
    """ElevenLabs answered with an error, or could not be reached in time."""

    def __init__(self, message: str, *, status: int | None = None, sent: bool = True) -> None:
        super().__init__(message)
        self.status = status
        # False when the request surely never reached ElevenLabs (no connection was made).
        self.sent = sent


def initiation_data(
    dynamic_variables: dict[str, Any],
    override: dict[str, Any] | None = None,
    user_id: str | None = None,
) -> dict[str, Any]:
    """`conversation_initiation_client_data` for a contact's variables, with the overrides and
    user id its request gave (those win over the override columns of a CSV)."""
    variables = {k: v for k, v in dynamic_variables.items() if k not in OVERRIDE_COLUMNS}
    agent: dict[str, Any] = {}
    if dynamic_variables.get("first_message"):
        agent["first_message"] = dynamic_variables["first_message"]
    if dynamic_variables.get("language"):
        agent["language"] = dynamic_variables["language"]
    if dynamic_variables.get("system_prompt"):
        agent["prompt"] = {"prompt": dynamic_variables["system_prompt"]}
    merged: dict[str, Any] = {}
    if agent:
        merged["agent"] = agent
    if dynamic_variables.get("voice_id"):
        merged["tts"] = {"voice_id": dynamic_variables["voice_id"]}
    if override:
        for section, values in override.items():
            if isinstance(values, dict) and isinstance(merged.get(section), dict):
                merged[section] = {**merged[section], **values}
            else:
                merged[section] = values
    data: dict[str, Any] = {"dynamic_variables": variables}
    if merged:
        data["conversation_config_override"] = merged
    if user_id:
        data["user_id"] = user_id
    return data


def websocket_url(http_url: str) -> str:
    return http_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)


class ElevenLabsClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        api_key: str | None,
        timeout_seconds: float,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    @property
    def has_api_key(self) -> bool:
        return bool(self._api_key)

    def _headers(self) -> dict[str, str]:
        return {"xi-api-key": self._api_key} if self._api_key else {}

    async def _request(self, method: str, path: str, **kwargs: Any) -> tuple[int, str]:
        url = f"{self._base}{path}"
        try:
            async with self._session.request(
                method, url, headers=self._headers(), timeout=self._timeout, **kwargs
            ) as response:
                text = await response.text()
        except aiohttp.ClientConnectorError as exc:
            raise AgentApiError(f"cannot reach ElevenLabs: {exc}", sent=False) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise AgentApiError(f"ElevenLabs request failed: {type(exc).__name__}") from exc
        if response.status >= 400:
            raise AgentApiError(
                f"ElevenLabs answered HTTP {response.status}: {text[:200]}",
                status=response.status,
            )
        return response.status, text

    async def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        _, text = await self._request(method, path, **kwargs)
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise AgentApiError("ElevenLabs answered something that is not JSON") from exc
        if not isinstance(body, dict):
            raise AgentApiError("ElevenLabs answered an unexpected JSON value")
        return body

    async def register_call(
        self,
        *,
        agent_id: str,
        from_number: str,
        to_number: str,
        client_data: dict[str, Any],
        direction: str = "outbound",
    ) -> str:
        """The TwiML that connects an answered call on our Twilio account to the agent."""
        _, text = await self._request(
            "POST",
            "/v1/convai/twilio/register-call",
            json={
                "agent_id": agent_id,
                "from_number": from_number,
                "to_number": to_number,
                "direction": direction,
                "conversation_initiation_client_data": client_data,
            },
        )
        if "<Response" not in text:
            raise AgentApiError("register-call answered no TwiML")
        return text

    async def outbound_call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Ask ElevenLabs to place a call itself (``path``: through which telephony)."""
        return await self._json("POST", path, json=body)

    async def conversation(self, conversation_id: str) -> dict[str, Any]:
        """GET Conversation: its status and metadata."""
        return await self._json("GET", f"/v1/convai/conversations/{conversation_id}")

    async def conversation_url(self, agent_id: str) -> str:
        """A WebSocket URL for one conversation: signed when we hold an API key."""
        if self._api_key:
            body = await self._json(
                "GET",
                "/v1/convai/conversation/get-signed-url?" + urlencode({"agent_id": agent_id}),
            )
            signed = body.get("signed_url")
            if not isinstance(signed, str) or not signed:
                raise AgentApiError("get-signed-url answered no signed_url")
            return signed
        query = urlencode({"agent_id": agent_id})
        return f"{websocket_url(self._base)}/v1/convai/conversation?{query}"


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


class ElevenLabsDialer(AgentPlacedDialer):
    """Places calls through ElevenLabs' Twilio integration (`agent_connection` native).

    ElevenLabs dials from the Twilio number imported into it, so the call also exists on that
    Twilio account: listing, fetching and hanging up go to the Twilio Dialer (the router sends
    them there, as it owns the call SID); this class only creates calls.
    """

    path = "/v1/convai/twilio/outbound-call"

    def telephony_config(self, request: DialRequest) -> dict[str, Any]:
        telephony = super().telephony_config(request)
        if request.record:
            telephony["twilio_call_recording_enabled"] = True
        mode = MACHINE_DETECTION_MODES.get(request.machine_detection or "")
        if mode:
            telephony["twilio_machine_detection"] = {"mode": mode}
        return telephony

    def call_id(self, answer: dict[str, Any]) -> str | None:
        call_sid = answer.get("callSid") or answer.get("call_sid")
        return str(call_sid) if call_sid else super().call_id(answer)


def _native(parts: DialerParts) -> ElevenLabsDialer:
    return ElevenLabsDialer(
        parts.agents,
        timeout_seconds=parts.settings.provider_timeout_seconds,
        on_conversation=parts.on_conversation,
    )


# Native calls send no Twilio callbacks to us: the post-call webhook ends them.
CONNECTIONS = (
    Connection(
        "native",
        needs=("agent_id", "agent_phone_number_id"),
        ended_by_report=True,
        dialer=_native,
    ),
)


def _classify(exc: AgentApiError) -> Exception:
    if not exc.sent:
        return DialRefused(str(exc), code="agent_unreachable", retryable=True)
    if exc.status == 429:
        return DialRefused(str(exc), code="429", retryable=True)
    if exc.status is not None and 400 <= exc.status < 500:
        return DialRefused(str(exc), code=f"elevenlabs_{exc.status}")
    # A 5xx or a broken answer may come after the call was placed.
    return DialAmbiguous(str(exc))
