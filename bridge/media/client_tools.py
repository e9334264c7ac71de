"""The client tools callbridge carries out for an agent, and the answer to every other one.

An ElevenLabs agent configured with a client tool sends `client_tool_call` and waits for the
client's `client_tool_result`: a call whose client never answers stalls. So every call gets an
answer, quickly: a registered tool's own result, or `is_error: true` with a text the agent can
act on (no such tool here, it failed, it took too long). The conversation goes on either way.

callbridge registers no client tools yet; one is an async function of the call's parameters
and context returning the result text, added to `callbridge_tools()` by name.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

log = logging.getLogger(__name__)

# The agent is waiting, and the relay promises an answer within a second.
TOOL_DEADLINE_SECONDS = 0.8


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
    def __init__(self, tools: Mapping[str, ClientTool] | None = None) -> None:
        self._tools: Mapping[str, ClientTool] = MappingProxyType(dict(tools or {}))

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._tools)

    async def run(self, name: str, parameters: dict[str, Any], context: ToolContext) -> ToolResult:
        """The tool's result; an error result (never an exception) when it cannot give one."""
        tool = self._tools.get(name)
        if tool is None:
            return ToolResult(f"callbridge has no client tool named {name!r}.", is_error=True)
        try:
            result = await asyncio.wait_for(tool(parameters, context), TOOL_DEADLINE_SECONDS)
        except TimeoutError:
            return ToolResult(
                f"client tool {name!r} did not finish within {TOOL_DEADLINE_SECONDS} s.",
                is_error=True,
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


def callbridge_tools() -> ClientToolRegistry:
    """The client tools callbridge carries out for every agent: none yet (the campaigns'
    follow-up tools will be the first)."""
    return ClientToolRegistry({})
