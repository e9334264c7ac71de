"""One Dialer for the dispatcher that hands each call to the dialer its campaign's connection
registered, and each question about a call to the dialer that owns it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from campaigns.dialing import Dialer, DialRequest, ProviderCall, lists_calls

OwnsCall = Callable[[str], bool] | None


class DialerRouter:
    """Connections without a dialer of their own, and every call no other dialer owns, go to
    the carrier's dialer (calls an agent platform places over the carrier live on it too)."""

    def __init__(
        self,
        carrier: Dialer,
        dialers: Mapping[str, tuple[Dialer, OwnsCall]],
        providers: Mapping[str, str],
    ) -> None:
        self._carrier = carrier
        self._dialers = dict(dialers)
        self._providers = dict(providers)

    def provider_of(self, agent_connection: str) -> str:
        """The provider its package registered the connection with."""
        return self._providers[agent_connection]

    def _for(self, request: DialRequest) -> Dialer:
        found = self._dialers.get(request.agent_connection)
        return found[0] if found is not None else self._carrier

    def _owner(self, call_id: str) -> Dialer:
        for dialer, owns in self._dialers.values():
            if owns is not None and owns(call_id):
                return dialer
        return self._carrier

    async def place_call(self, request: DialRequest) -> str:
        return await self._for(request).place_call(request)

    def can_list_calls(self, agent_connection: str) -> bool:
        """The dialer that owns the connection's calls says; calls no other dialer owns live on
        the carrier, whose list finds them."""
        found = self._dialers.get(agent_connection)
        if found is not None and found[1] is not None:
            return lists_calls(found[0], agent_connection)
        return lists_calls(self._carrier, agent_connection)

    async def find_calls(self, to: str, since: datetime) -> list[ProviderCall]:
        found = await self._carrier.find_calls(to, since)
        for dialer, owns in self._dialers.values():
            if owns is not None:
                found += await dialer.find_calls(to, since)
        return found

    async def fetch_call(self, call_id: str) -> ProviderCall | None:
        return await self._owner(call_id).fetch_call(call_id)

    async def hang_up(self, call_id: str) -> None:
        await self._owner(call_id).hang_up(call_id)

    async def leave_message(self, call_id: str, message: str) -> None:
        owner = self._owner(call_id)
        leave = getattr(owner, "leave_message", None)
        if leave is None:
            raise NotImplementedError("this call's provider cannot leave a message")
        await leave(call_id, message)
