"""The client tool registry answers every call: a tool's result, or an error the agent can act
on (no such tool, the tool failed, the tool took too long), never an exception."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridge.media.client_tools import (
    TOOL_DEADLINE_SECONDS,
    ClientToolRegistry,
    ToolContext,
    callbridge_tools,
)

CONTEXT = ToolContext(attempt_id="att_1", conversation_id="conv_1")


async def lookup(parameters: dict[str, Any], context: ToolContext) -> str:
    return f"account {parameters['account']} of {context.attempt_id}: paid"


async def broken(parameters: dict[str, Any], context: ToolContext) -> str:
    raise RuntimeError("database down, phone +14155550100")


async def stuck(parameters: dict[str, Any], context: ToolContext) -> str:
    await asyncio.Event().wait()  # never answers
    return "never"


async def test_callbridge_answers_its_follow_up_tools_and_no_other(
    sm: async_sessionmaker[AsyncSession],
) -> None:
    tools = callbridge_tools(sm)
    assert tools.names == {
        "callbridge_schedule_callback",
        "callbridge_call_other_number",
        "callbridge_do_not_call",
    }
    result = await tools.run("lookup_account", {}, CONTEXT)
    assert result.is_error is True
    assert result.result == "callbridge has no client tool named 'lookup_account'."
    # A conversation that is not one of callbridge's calls gets an error, not a request.
    stray = await tools.run("callbridge_do_not_call", {}, ToolContext(None, "conv_x"))
    assert stray.is_error is True and "failed" in stray.result
    unknown = await tools.run("callbridge_do_not_call", {}, CONTEXT)
    assert unknown.is_error is True


async def test_a_registered_tool_answers_and_a_failing_or_stuck_one_gives_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tools = ClientToolRegistry({"lookup": lookup, "broken": broken, "stuck": stuck})
    assert tools.names == {"lookup", "broken", "stuck"}
    ok = await tools.run("lookup", {"account": "A-7"}, CONTEXT)
    assert (ok.result, ok.is_error) == ("account A-7 of att_1: paid", False)
    failed = await tools.run("broken", {}, CONTEXT)
    # The agent learns it failed, not the failure's details (they may hold personal data).
    assert (failed.result, failed.is_error) == ("client tool 'broken' failed: RuntimeError.", True)
    assert "+14155550100" not in caplog.text and "RuntimeError" in caplog.text
    started = time.monotonic()
    late = await tools.run("stuck", {}, CONTEXT)
    assert late.is_error is True and "did not finish" in late.result
    assert time.monotonic() - started < 1.0  # still inside the relay's one-second promise
    assert TOOL_DEADLINE_SECONDS < 1.0
