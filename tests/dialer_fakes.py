"""A provider standing in at the Dialer port, for tests of the real dispatcher on a real database.

It notes what reaches it and when, answers the first creates with 429 if told to, and can be slow
both ways; it lists no calls (a refused create creates nothing).
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from campaigns.clock import utcnow
from campaigns.dialing import DialRefused, DialRequest, ProviderCall


class Provider:
    """Each create reaches it ``one_way`` seconds after it leaves; the first ``refusals`` of them
    are answered with 429, ``answer_after`` seconds after they left; the others are placed."""

    def __init__(self, *, one_way: float = 0.0, refusals: int = 0, answer_after: float = 0.0):
        self.one_way = one_way
        self.refusals = refusals
        self.answer_after = answer_after
        self.arrivals: list[datetime] = []  # when each create reached it
        self.numbers: list[str] = []  # whom each create was to
        self.creates: list[str] = []  # which attempt each create was for

    def provider_of(self, agent_connection: str) -> str:
        return "fake"

    async def place_call(self, request: DialRequest) -> str:
        await asyncio.sleep(self.one_way)  # the network, not a wait for a condition
        self.arrivals.append(utcnow())
        self.numbers.append(request.to)
        self.creates.append(request.attempt_id)
        await asyncio.sleep(max(0.0, self.answer_after - self.one_way))
        if len(self.arrivals) <= self.refusals:
            raise DialRefused("Too Many Requests", code="20429", retryable=True)
        return f"CA{len(self.arrivals):032d}"

    async def find_calls(self, to: str, since: datetime) -> list[ProviderCall]:
        return []

    async def fetch_call(self, call_id: str) -> ProviderCall | None:
        return None

    async def hang_up(self, call_id: str) -> None:
        return None
