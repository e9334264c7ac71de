"""The client tools callbridge carries out for an agent, and the answer to every other one.

An ElevenLabs agent configured with a client tool sends `client_tool_call` and waits for the
client's `client_tool_result`: a call whose client never answers stalls. So every call gets an
answer, quickly: a registered tool's own result, or `is_error: true` with a text the agent can
act on (no such tool here, it failed, it took too long). The conversation goes on either way.

A tool is an async function of the call's parameters and context returning the result text,
added to `callbridge_tools()` by name. callbridge's own are the follow-ups a person asks for
(campaigns.followups): `callbridge_schedule_callback` ({callback_time}: a time, read in the
person's zone when it has no offset), `callbridge_call_other_number` ({phone_number}) and
`callbridge_do_not_call`. Each answers at once whether the request will be honoured, so the
agent can confirm it, or say why not, before hanging up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns import followups
from campaigns.clock import utcnow

log = logging.getLogger(__name__)

# The agent is waiting, and the relay promises an answer within a second.
TOOL_DEADLINE_SECONDS = 0.8
# A follow-up is written to the database before it is confirmed: when many calls ask at once,
# writers take turns (SQLite has one), so its answer may take longer. The agent waits for it
# (an ElevenLabs client tool waits up to its response timeout: declare these with 10 s).
FOLLOW_UP_DEADLINE_SECONDS = 8.0


@dataclass(frozen=True)
class ToolContext:
    """Which call a tool runs for."""

    attempt_id: str | None
    conversation_id: str | None


@dataclass(frozen=True)
class ToolResult:
    result: str
    is_error: bool


ClientTool = Callable[[dict[str, Any], ToolContext], Awaitable[str]]


class ClientToolRegistry:
    def __init__(
        self,
        tools: Mapping[str, ClientTool] | None = None,
        deadlines: Mapping[str, float] | None = None,
    ) -> None:
        """``deadlines``: seconds a tool may take, by name (else TOOL_DEADLINE_SECONDS)."""
        self._tools: Mapping[str, ClientTool] = MappingProxyType(dict(tools or {}))
        self._deadlines: Mapping[str, float] = MappingProxyType(dict(deadlines or {}))

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._tools)

    async def run(self, name: str, parameters: dict[str, Any], context: ToolContext) -> ToolResult:
        """The tool's result; an error result (never an exception) when it cannot give one."""
        tool = self._tools.get(name)
        if tool is None:
            return ToolResult(f"callbridge has no client tool named {name!r}.", is_error=True)
        deadline = self._deadlines.get(name, TOOL_DEADLINE_SECONDS)
        try:
            result = await asyncio.wait_for(tool(parameters, context), deadline)
        except TimeoutError:
            return ToolResult(
                f"client tool {name!r} did not finish within {deadline} s.", is_error=True
            )
        except Exception as exc:
            # Logged without the parameters or the message: either may carry personal data.
            log.warning(
                "client tool %r failed for attempt %s: %s",
                name,
                context.attempt_id,
                type(exc).__name__,
            )
            return ToolResult(f"client tool {name!r} failed: {type(exc).__name__}.", True)
        return ToolResult(str(result), is_error=False)


SCHEDULE_CALLBACK = "callbridge_schedule_callback"
CALL_OTHER_NUMBER = "callbridge_call_other_number"
DO_NOT_CALL = "callbridge_do_not_call"


def _said(outcome: followups.Outcome) -> str:
    """The result the agent reads: what will happen, or why it will not."""
    if outcome.decision == followups.Decision.CALLBACK_QUEUED and outcome.call_at is not None:
        local = outcome.call_at.astimezone(ZoneInfo(outcome.zone or "UTC"))
        return (
            f"Callback scheduled for {local.strftime('%A %Y-%m-%d %H:%M')} "
            f"({outcome.zone or 'UTC'})."
        )
    if outcome.decision == followups.Decision.REDIRECT_QUEUED:
        return f"The next call will go to {outcome.phone_number}."
    if outcome.decision == followups.Decision.DO_NOT_CALL:
        return "The number will not be called again."
    return f"Not done ({outcome.decision}): {outcome.reason or 'not allowed'}."


def _follow_up_tool(
    sm: async_sessionmaker[AsyncSession], kind: str, parameter: str | None
) -> ClientTool:
    async def run(parameters: dict[str, Any], context: ToolContext) -> str:
        if context.attempt_id is None:
            raise LookupError("the conversation is not one of callbridge's calls")
        asked = str(parameters.get(parameter) or "") if parameter else ""
        # Shielded: a request the agent stopped waiting for is still recorded and decided.
        outcome = await asyncio.shield(
            followups.request(
                sm, context.attempt_id, kind, asked, source=followups.LIVE_CALL, now=utcnow()
            )
        )
        return _said(outcome)

    return run


def callbridge_tools(sm: async_sessionmaker[AsyncSession] | None = None) -> ClientToolRegistry:
    """The client tools callbridge carries out for every agent: the follow-ups a person asks
    for, recorded in the database ``sm`` (none without one)."""
    if sm is None:
        return ClientToolRegistry({})
    tools = {
        SCHEDULE_CALLBACK: _follow_up_tool(sm, followups.CALLBACK, "callback_time"),
        CALL_OTHER_NUMBER: _follow_up_tool(sm, followups.REDIRECT, "phone_number"),
        DO_NOT_CALL: _follow_up_tool(sm, followups.STOP, None),
    }
    return ClientToolRegistry(tools, {name: FOLLOW_UP_DEADLINE_SECONDS for name in tools})
