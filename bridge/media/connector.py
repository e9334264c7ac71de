"""Agent conversations opened while Twilio fetches TwiML, handed to the Media Stream later.

The stream usually reaches the node that answered the TwiML request and finds its conversation
waiting (saving the agent's set-up time on the first turn). If it lands elsewhere, or the
conversation was never claimed, a new one is opened then; unclaimed ones are closed after
PENDING_TTL_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridge.media.client_tools import ClientToolRegistry
from bridge.media.conversation import AgentConversation, open_conversation
from bridge.media.live_record import LiveRecord
from bridge.telephony.elevenlabs.client import AgentApiError, ElevenLabsClient, initiation_data
from bridge.telephony.elevenlabs.post_call import conversation_known
from campaigns import followups
from campaigns.inbound import callback_variables
from campaigns.models import Attempt, AttemptStatus, Campaign, Contact, Direction

log = logging.getLogger(__name__)

PENDING_TTL_SECONDS = 60.0


class AgentUnavailable(Exception):
    """No agent conversation could be opened for the call."""


@dataclass(frozen=True)
class CallContext:
    """What an answered call needs to reach its agent."""

    attempt_id: str
    call_sid: str | None
    agent_id: str | None
    agent_connection: str
    to: str
    from_number: str | None
    dynamic_variables: dict[str, Any]
    ended: bool = False  # the attempt is in a final state
    campaign_id: str | None = None
    # The contact's own overrides and user id, sent with the variables (initiation_data).
    agent_override: dict[str, Any] | None = None
    user_id: str | None = None


async def load_context(sm: async_sessionmaker[AsyncSession], attempt_id: str) -> CallContext | None:
    async with sm() as session:
        row = (
            await session.execute(
                select(Attempt, Campaign, Contact)
                .join(Campaign, Campaign.id == Attempt.campaign_id)
                .join(Contact, Contact.id == Attempt.contact_id)
                .where(Attempt.id == attempt_id)
            )
        ).first()
        if row is None:
            return None
        attempt, campaign, contact = row
        # A follow-up call is told what the campaign passes about the call before.
        variables = await followups.call_variables(session, attempt, contact)
        if attempt.direction == Direction.INBOUND:
            # A call back: the agent is also told why the person was called.
            variables = await callback_variables(session, attempt, contact)
    return CallContext(
        attempt_id=attempt.id,
        call_sid=attempt.provider_call_id,
        agent_id=campaign.agent_id,
        agent_connection=campaign.agent_connection,
        to=attempt.phone_number,
        from_number=campaign.from_number,
        dynamic_variables=variables,
        ended=attempt.status in AttemptStatus.TERMINAL,
        campaign_id=campaign.id,
        agent_override=contact.agent_override,
        user_id=contact.user_id,
    )


class AgentConnector:
    def __init__(
        self,
        client: ElevenLabsClient,
        session: aiohttp.ClientSession,
        sm: async_sessionmaker[AsyncSession],
        *,
        timeout_seconds: float,
        tools: ClientToolRegistry | None = None,
    ) -> None:
        self._client = client
        self._tools = tools or ClientToolRegistry()
        self._session = session
        self._sm = sm
        self._timeout = timeout_seconds
        self._pending: dict[str, asyncio.Task[AgentConversation]] = {}
        self._expiries: dict[str, asyncio.TimerHandle] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.opened = 0  # conversations opened by this node, for tests and metrics

    @property
    def pending(self) -> int:
        """Conversations opened for a call whose media stream has not taken them yet."""
        return len(self._pending)

    def prepare(self, context: CallContext) -> None:
        """Start opening the conversation now; the Media Stream claims it with take()."""
        if context.attempt_id in self._pending:
            return
        task = asyncio.create_task(self._open(context), name=f"agent-{context.attempt_id}")
        self._pending[context.attempt_id] = task
        loop = asyncio.get_running_loop()
        self._expiries[context.attempt_id] = loop.call_later(
            PENDING_TTL_SECONDS, self._expire, context.attempt_id
        )

    async def take(self, context: CallContext) -> AgentConversation:
        """The call's conversation: the prepared one, or a new one. Raises AgentUnavailable."""
        task = self._pending.pop(context.attempt_id, None)
        expiry = self._expiries.pop(context.attempt_id, None)
        if expiry is not None:
            expiry.cancel()
        if task is None:
            task = asyncio.create_task(self._open(context))
        try:
            conversation = await task
        except (AgentApiError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise AgentUnavailable(f"{type(exc).__name__}: {exc}") from exc
        conversation.claim()
        return conversation

    def _expire(self, attempt_id: str) -> None:
        self._expiries.pop(attempt_id, None)
        task = self._pending.pop(attempt_id, None)
        if task is not None:
            log.info("agent conversation for attempt %s never claimed; closing it", attempt_id)
            closing = asyncio.create_task(_discard(task))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        for handle in self._expiries.values():
            handle.cancel()
        self._expiries.clear()
        tasks = list(self._pending.values())
        self._pending.clear()
        await asyncio.gather(*(_discard(t) for t in tasks), *self._closing, return_exceptions=True)

    async def _open(self, context: CallContext) -> AgentConversation:
        if not context.agent_id:
            raise AgentApiError("the campaign has no agent_id")

        async def remember(conversation_id: str) -> None:
            await self._remember(context.attempt_id, conversation_id)

        conversation = await open_conversation(
            self._client,
            self._session,
            agent_id=context.agent_id,
            client_data=initiation_data(
                context.dynamic_variables, context.agent_override, context.user_id
            ),
            timeout_seconds=self._timeout,
            on_conversation_id=remember,
            record=LiveRecord(self._sm, context.attempt_id),
            tools=self._tools,
        )
        self.opened += 1
        return conversation

    async def _remember(self, attempt_id: str, conversation_id: str) -> None:
        try:
            await conversation_known(self._sm, attempt_id, conversation_id)
        except Exception:
            log.exception("could not store conversation id for attempt %s", attempt_id)


async def _discard(task: asyncio.Task[AgentConversation]) -> None:
    if not task.done():
        task.cancel()
    try:
        conversation = await task
    except (Exception, asyncio.CancelledError):
        return
    with contextlib.suppress(Exception):
        await conversation.close()
