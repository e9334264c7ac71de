"""ElevenLabs' agents API: register-call TwiML, outbound calls it places itself, conversation URLs.

One client serves the ways a call reaches an agent: the TwiML handler asks it for register-call
TwiML, the media relay for a conversation URL, and the agent-placed dialers (native, over
ElevenLabs' own Twilio integration; sip_trunk, over the user's SIP trunk) ask it to place calls.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlencode

import aiohttp

log = logging.getLogger(__name__)

# Contact columns that ElevenLabs' own batch calling turns into overrides, not variables.
OVERRIDE_COLUMNS = ("language", "first_message", "system_prompt", "voice_id")


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
