"""One Dialer for the dispatcher that hands each call to the provider its campaign asks for."""

from __future__ import annotations

from datetime import datetime

from campaigns.dialing import Dialer, DialRequest, ProviderCall


class DialerRouter:
    """`native` calls go to ElevenLabs; everything else, and every question about an existing
    call, goes to Twilio (native calls are placed on the same Twilio account)."""

    def __init__(self, twilio: Dialer, native: Dialer) -> None:
        self.twilio = twilio
        self._twilio = twilio
        self._native = native

    def _for(self, request: DialRequest) -> Dialer:
        return self._native if request.agent_connection == "native" else self._twilio

    async def place_call(self, request: DialRequest) -> str:
        return await self._for(request).place_call(request)

    async def find_calls(self, to: str, since: datetime) -> list[ProviderCall]:
        return await self._twilio.find_calls(to, since)

    async def fetch_call(self, call_id: str) -> ProviderCall | None:
        return await self._twilio.fetch_call(call_id)

    async def hang_up(self, call_id: str) -> None:
        await self._twilio.hang_up(call_id)

    async def leave_message(self, call_id: str, message: str) -> None:
        await self._twilio.leave_message(call_id, message)
