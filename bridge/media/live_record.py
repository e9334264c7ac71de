"""What a live agent conversation leaves on its attempt: the transcript as it grows, the client
tools the agent called, and the error the agent ended on.

The conversation's reader notes each turn without waiting for the database; one writer task
per call stores the latest state (several notes in a burst become one UPDATE). Nothing is
stored before the call's Media Stream claims the conversation: one opened for a call that
never streams belongs to no attempt. Closing stores what is left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns.models import Attempt

log = logging.getLogger(__name__)

# A transcript is kept to this many turns and each turn to this many characters: an agent
# that talks for hours must not grow one row without bound.
MAX_TURNS = 500
MAX_TURN_CHARS = 2000
MAX_TOOL_CALLS = 200


class LiveRecord:
    def __init__(self, sm: async_sessionmaker[AsyncSession], attempt_id: str) -> None:
        self._sm = sm
        self.attempt_id = attempt_id
        self._opened = time.monotonic()
        self.transcript: list[dict[str, Any]] = []
        self.tool_calls: list[dict[str, Any]] = []
        self.agent_error: str | None = None
        self._claimed = False
        self._dirty = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self._version = 0  # bumped by every note
        self._stored_version = 0

    # ------------------------------------------------------------------ notes, from the reader

    def _seconds(self) -> int:
        return int(time.monotonic() - self._opened)

    def said(self, role: str, text: str, event_id: int) -> None:
        if not text or len(self.transcript) >= MAX_TURNS:
            return
        self.transcript.append(
            {
                "role": role,
                "message": text[:MAX_TURN_CHARS],
                "time_in_call_secs": self._seconds(),
                "event_id": event_id,
            }
        )
        self._changed()

    def corrected(self, original: str, corrected: str, event_id: int) -> None:
        """The agent was cut off: its turn shows what the callee actually heard."""
        agent_turns = [t for t in reversed(self.transcript) if t["role"] == "agent"]
        turn = next((t for t in agent_turns if t["event_id"] == event_id), None)
        turn = turn or next((t for t in agent_turns if t["message"] == original), None)
        if turn is None:
            return
        turn["message"] = corrected[:MAX_TURN_CHARS]
        turn["interrupted"] = True
        self._changed()

    def tool_called(self, tool_name: str, tool_call_id: str, *, is_error: bool) -> None:
        if len(self.tool_calls) >= MAX_TOOL_CALLS:
            return
        self.tool_calls.append(
            {
                "tool_name": tool_name,
                "tool_call_id": tool_call_id,
                "is_error": is_error,
                "time_in_call_secs": self._seconds(),
            }
        )
        self._changed()

    def failed(self, message: str) -> None:
        self.agent_error = message[:MAX_TURN_CHARS]
        self._changed()

    # ------------------------------------------------------------------ storing

    def claim(self) -> None:
        """The call's Media Stream took the conversation: from now on it is the attempt's."""
        if self._claimed:
            return
        self._claimed = True
        self._writer = asyncio.create_task(self._write_loop(), name=f"live-{self.attempt_id}")
        if self.transcript or self.tool_calls or self.agent_error:
            self._dirty.set()

    def _changed(self) -> None:
        self._version += 1
        self._dirty.set()

    async def _write_loop(self) -> None:
        # Never cancelled: a database write cut in the middle can leave its connection hanging.
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if self._version != self._stored_version:
                version = self._version
                await self._store()
                self._stored_version = version
            if self._closed and not self._dirty.is_set():
                return

    async def _store(self) -> None:
        values: dict[str, Any] = {
            # The event ids only match corrections to their turn: they are not stored.
            "live_transcript": [
                {k: v for k, v in t.items() if k != "event_id"} for t in self.transcript
            ]
            or None,
            "tool_calls": [dict(c) for c in self.tool_calls] or None,
        }
        if self.agent_error is not None:
            values["agent_error"] = self.agent_error
        try:
            async with self._sm.begin() as session:
                await session.execute(
                    update(Attempt).where(Attempt.id == self.attempt_id).values(**values)
                )
        except Exception:
            log.exception("could not store the live conversation of attempt %s", self.attempt_id)

    async def close(self) -> None:
        """Store what is not stored yet, then let the writer end."""
        self._closed = True
        if self._writer is None:
            return
        self._dirty.set()
        await asyncio.shield(self._writer)
