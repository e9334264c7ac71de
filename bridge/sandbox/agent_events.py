"""What the sandbox agent says on the conversation WebSocket besides audio: every server
message type of ElevenLabs' agent AsyncAPI, at the moments ElevenLabs sends them.

Each message is built here, in the shape the AsyncAPI gives it; `Narrator` sends them as the
conversation goes (agent_brain calls it at each turn). Some behaviour is chosen by the agent id,
so that a test picks it by naming its agent, with no configuration:

- an id containing ``client_tool`` calls the client tool ``lookup_account`` after the callee's
  first turn and waits (up to TOOL_WAIT_SECONDS) for the `client_tool_result`;
- an id containing ``followup_tools`` has callbridge's follow-up client tools: when the callee
  asks for a callback, another number or a stop (bridge/sandbox/number_table.py FOLLOW_UP_TABLE),
  it calls ``callbridge_schedule_callback``, ``callbridge_call_other_number`` or
  ``callbridge_do_not_call`` after the callee's turn and waits for the result to confirm it;
- an id containing ``error_mid_call`` sends an `error` after the callee's first turn and closes
  the conversation with code 1002, as ElevenLabs does on an LLM timeout.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from campaigns.clock import iso_z

# How long the agent waits for a client tool's result before going on without it (ElevenLabs
# lets a tool configure its own; a stalled client shows here as a long wait).
TOOL_WAIT_SECONDS = 5.0
# callbridge's follow-up tools are declared with a longer response timeout (README).
FOLLOW_UP_TOOL_WAIT_SECONDS = 10.0
CLIENT_TOOL = "lookup_account"
ERROR_CLOSE_CODE = 1002
ERROR_MESSAGE = "The language model did not answer in time."
LLM = "gemini-2.0-flash"
CONTEXT_LIMIT_TOKENS = 1_048_576
# vad_score and internal_turn_probability every this many callee frames (5 a second).
SCORE_EVERY_FRAMES = 10


@dataclass(frozen=True)
class AgentBehaviour:
    """What an agent does beyond talking, chosen by its id."""

    client_tool: str | None = None
    error_mid_call: bool = False
    follow_up_tools: bool = False


def behaviour_for(agent_id: str) -> AgentBehaviour:
    return AgentBehaviour(
        client_tool=CLIENT_TOOL if "client_tool" in agent_id else None,
        error_mid_call="error_mid_call" in agent_id,
        follow_up_tools="followup_tools" in agent_id,
    )


# The client tool that carries each follow-up the callee asks for, and its parameter.
FOLLOW_UP_TOOLS = {
    "callback_time": ("callbridge_schedule_callback", "callback_time"),
    "redirect_phone_number": ("callbridge_call_other_number", "phone_number"),
    "stop": ("callbridge_do_not_call", None),
}


# ---------------------------------------------------------------------- the messages


def _now() -> str:
    return iso_z(datetime.now(UTC))


def user_transcript(text: str, event_id: int) -> dict[str, Any]:
    return {
        "type": "user_transcript",
        "user_transcription_event": {"user_transcript": text, "event_id": event_id},
    }


def tentative_user_transcript(text: str, event_id: int) -> dict[str, Any]:
    return {
        "type": "tentative_user_transcript",
        "tentative_user_transcription_event": {"user_transcript": text, "event_id": event_id},
    }


def agent_response(text: str, event_id: int) -> dict[str, Any]:
    return {
        "type": "agent_response",
        "agent_response_event": {"agent_response": text, "event_id": event_id},
    }


def agent_response_correction(original: str, corrected: str, event_id: int) -> dict[str, Any]:
    return {
        "type": "agent_response_correction",
        "agent_response_correction_event": {
            "original_agent_response": original,
            "corrected_agent_response": corrected,
            "event_id": event_id,
        },
    }


def agent_chat_response_part(text: str, part: str, event_id: int) -> dict[str, Any]:
    return {
        "type": "agent_chat_response_part",
        "text_response_part": {"text": text, "type": part, "event_id": event_id},
    }


def agent_reasoning_response_part(text: str, part: str, event_id: int) -> dict[str, Any]:
    # The spec gives this event id as a string, unlike every other one.
    return {
        "type": "agent_reasoning_response_part",
        "reasoning_response_part": {"text": text, "type": part, "event_id": str(event_id)},
    }


def client_tool_call(
    tool_name: str, tool_call_id: str, parameters: dict[str, Any], event_id: int
) -> dict[str, Any]:
    return {
        "type": "client_tool_call",
        "client_tool_call": {
            "tool_name": tool_name,
            "tool_call_id": tool_call_id,
            "parameters": parameters,
            "event_id": event_id,
        },
    }


def rich_content(event_id: int) -> dict[str, Any]:
    return {
        "type": "rich_content",
        "rich_content": {
            "rich_content_id": f"rc_{event_id}",
            "component": "item_card",
            "props": {"title": "Your account", "subtitle": "Sandbox"},
            "event_id": event_id,
        },
    }


def agent_tool_request(tool_name: str, tool_call_id: str, event_id: int) -> dict[str, Any]:
    return {
        "type": "agent_tool_request",
        "agent_tool_request": {
            "tool_name": tool_name,
            "tool_call_id": tool_call_id,
            "tool_type": "system",
            "event_id": event_id,
        },
    }


def agent_tool_response(tool_name: str, tool_call_id: str, event_id: int) -> dict[str, Any]:
    return {
        "type": "agent_tool_response",
        "agent_tool_response": {
            "tool_name": tool_name,
            "tool_call_id": tool_call_id,
            "tool_type": "system",
            "is_error": False,
            "is_called": True,
            "event_id": event_id,
        },
    }


def agent_tool_response_full_payload(
    tool_name: str, tool_call_id: str, event_id: int
) -> dict[str, Any]:
    return {
        "type": "agent_tool_response_full_payload",
        "agent_tool_response_full_payload": {
            "tool_name": tool_name,
            "tool_call_id": tool_call_id,
            "tool_type": "system",
            "is_error": False,
            "is_blocked": False,
            "is_called": True,
            "event_id": event_id,
            "full_tool_result": '{"language": "en"}',
            "truncated": False,
        },
    }


def mcp_tool_call(tool_call_id: str, state: str) -> dict[str, Any]:
    call: dict[str, Any] = {
        "service_id": "mcp_sandbox",
        "tool_call_id": tool_call_id,
        "tool_name": "search_faq",
        "tool_description": "Search the sandbox FAQ",
        "parameters": {"query": "opening hours"},
        "timestamp": _now(),
        "state": state,
    }
    if state == "success":
        call["result"] = [{"type": "text", "text": "Open 9 to 5."}]
    return {"type": "mcp_tool_call", "mcp_tool_call": call}


def mcp_connection_status() -> dict[str, Any]:
    return {
        "type": "mcp_connection_status",
        "mcp_connection_status": {
            "integrations": [
                {
                    "integration_id": "mcp_sandbox",
                    "integration_type": "mcp_server",
                    "is_connected": True,
                    "tool_count": 1,
                }
            ]
        },
    }


def vad_score(score: float) -> dict[str, Any]:
    return {"type": "vad_score", "vad_score_event": {"vad_score": score}}


def context_usage(event_id: int, tokens: int) -> dict[str, Any]:
    return {
        "type": "context_usage",
        "context_usage_event": {
            "event_id": event_id,
            "model": LLM,
            "context_tokens": tokens,
            "context_limit_tokens": CONTEXT_LIMIT_TOKENS,
        },
    }


def asr_initiation_metadata() -> dict[str, Any]:
    return {
        "type": "asr_initiation_metadata",
        "asr_initiation_metadata_event": {"model": "scribe_realtime", "language": "en"},
    }


def guardrail_triggered() -> dict[str, Any]:
    return {"type": "guardrail_triggered"}


def internal_turn_probability(probability: float) -> dict[str, Any]:
    return {
        "type": "internal_turn_probability",
        "turn_probability_internal_event": {"turn_probability": probability},
    }


def internal_tentative_agent_response(text: str) -> dict[str, Any]:
    return {
        "type": "internal_tentative_agent_response",
        "tentative_agent_response_internal_event": {"tentative_agent_response": text},
    }


def agent_typing(is_typing: bool) -> dict[str, Any]:
    return {
        "type": "agent_typing",
        "agent_typing_event": {"is_typing": is_typing, "duration_ms": 500 if is_typing else None},
    }


def external_agent_connected() -> dict[str, Any]:
    return {"type": "external_agent_connected", "external_agent_connected_event": {}}


def external_agent_disconnected() -> dict[str, Any]:
    return {"type": "external_agent_disconnected", "external_agent_disconnected_event": {}}


def error(code: int, error_type: str, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error_event": {
            "code": code,
            "message": message,
            "error_type": error_type,
            "reason": message,
            "debug_message": None,
            "details": None,
        },
    }


# ---------------------------------------------------------------------- the narrator

Send = Callable[[dict[str, Any]], Awaitable[None]]


class Narrator:
    """Sends a conversation's text, tool and housekeeping messages at each of its moments."""

    def __init__(self, send: Send, next_id: Callable[[], int], behaviour: AgentBehaviour):
        self._send = send
        self._next_id = next_id
        self.behaviour = behaviour
        self.tool_answered = asyncio.Event()
        self.tool_calls: list[dict[str, Any]] = []
        self._agent_text = ""
        self._tokens = 900
        self._extras_sent = False

    async def opened(self) -> None:
        """Right after the initiation metadata."""
        await self._send(asr_initiation_metadata())
        await self._send(mcp_connection_status())

    async def agent_turn(self, text: str) -> None:
        """Before the agent's audio for ``text``: what it is about to say, as text."""
        self._agent_text = text
        await self._send(internal_tentative_agent_response(text))
        event_id = self._next_id()
        for part, chunk in (("start", ""), ("delta", text), ("stop", "")):
            await self._send(agent_reasoning_response_part(chunk, part, event_id))
        for part, chunk in (("start", ""), ("delta", text), ("stop", "")):
            await self._send(agent_chat_response_part(chunk, part, event_id))
        await self._send(agent_response(text, self._next_id()))

    async def agent_turn_done(self) -> None:
        self._tokens += 40 + len(self._agent_text)
        await self._send(context_usage(self._next_id(), self._tokens))

    async def heard(self, frame_number: int, speech: bool) -> None:
        if frame_number % SCORE_EVERY_FRAMES:
            return
        await self._send(vad_score(0.93 if speech else 0.02))
        await self._send(internal_turn_probability(0.1 if speech else 0.8))
        if speech and frame_number == SCORE_EVERY_FRAMES:
            await self._send(tentative_user_transcript("Yes", self._next_id()))

    async def cut_off(self) -> None:
        """The callee talked over the agent: what was heard of its turn."""
        original = self._agent_text
        heard = original.split(",")[0] + "..." if "," in original else original[:10] + "..."
        await self._send(agent_response_correction(original, heard, self._next_id()))

    async def callee_turn(self, text: str) -> None:
        await self._send(user_transcript(text, self._next_id()))
        if not self._extras_sent:
            self._extras_sent = True
            await self._extras()

    async def _extras(self) -> None:
        """Once per conversation: the message types of tools, MCP, rich content and hand-over."""
        call_id = f"toolu_{uuid.uuid4().hex[:12]}"
        await self._send(agent_tool_request("language_detection", call_id, self._next_id()))
        await self._send(agent_tool_response("language_detection", call_id, self._next_id()))
        await self._send(
            agent_tool_response_full_payload("language_detection", call_id, self._next_id())
        )
        mcp_id = f"mcp_{uuid.uuid4().hex[:12]}"
        await self._send(mcp_tool_call(mcp_id, "loading"))
        await self._send(mcp_tool_call(mcp_id, "success"))
        await self._send(rich_content(self._next_id()))
        await self._send(guardrail_triggered())
        await self._send(external_agent_connected())
        await self._send(agent_typing(True))
        await self._send(agent_typing(False))
        await self._send(external_agent_disconnected())

    async def call_client_tool(self, tool_name: str, parameters: dict[str, Any]) -> None:
        call_id = f"call_{uuid.uuid4().hex[:12]}"
        self.tool_calls.append(
            {"tool_name": tool_name, "tool_call_id": call_id, "sent_at": time.time()}
        )
        await self._send(client_tool_call(tool_name, call_id, parameters, self._next_id()))

    def tool_result(self, message: dict[str, Any]) -> None:
        """A `client_tool_result` arrived: note it on the call it answers."""
        for call in self.tool_calls:
            if call["tool_call_id"] == message.get("tool_call_id") and "result" not in call:
                call["answered_after_ms"] = round((time.time() - call["sent_at"]) * 1000)
                call["result"] = message.get("result")
                call["is_error"] = message.get("is_error")
                self.tool_answered.set()

    async def fail(self) -> None:
        await self._send(error(ERROR_CLOSE_CODE, "llm_timeout", ERROR_MESSAGE))
