"""What the callee has heard of the agent's audio, told by the marks Twilio echoes.

Twilio plays the audio it is sent from a buffer, at its own pace: being sent is not being
heard. So a `mark` follows each agent audio event, and Twilio echoes it once the audio before
it has been played. On an interruption, only audio whose mark has not come back is still in
Twilio's buffer: a `clear` is sent only then. Twilio echoes the marks of the audio a `clear`
dropped at once; those echoes are known for what they are and not counted as heard.
"""

from __future__ import annotations

import logging
from collections import deque

from aiohttp import web

from bridge.media import twilio_wire

log = logging.getLogger(__name__)

MULAW_BYTES_PER_SECOND = 8000
# Marks awaiting their echo, at most (30 s of 20 ms events): Twilio echoes them as it plays, so
# more means it stopped echoing; the oldest are then taken as heard, to bound memory.
MAX_PENDING_MARKS = 1500


def _decoded_length(payload: str) -> int:
    """Bytes in a base64 payload, without decoding it."""
    return len(payload) * 3 // 4 - payload[-2:].count("=")


class Playback:
    def __init__(self, twilio: web.WebSocketResponse, stream_sid: str) -> None:
        self._twilio = twilio
        self._stream_sid = stream_sid
        self._marks = 0
        # Marks sent and not echoed, oldest first, and the bytes of audio before each. Two
        # deques of str and int, not one of tuples: one entry per 20 ms frame, and nothing
        # the garbage collector has to track.
        self._names: deque[str] = deque()
        self._sizes: deque[int] = deque()
        self._cleared: set[str] = set()
        self.heard_bytes = 0
        self.cleared_bytes = 0
        self.clears = 0

    @property
    def unheard_bytes(self) -> int:
        return sum(self._sizes)

    def _heard_oldest(self) -> str:
        self.heard_bytes += self._sizes.popleft()
        return self._names.popleft()

    async def play(self, payload: str) -> None:
        """Send one agent audio event to Twilio, then its mark."""
        await self._twilio.send_str(twilio_wire.media(self._stream_sid, payload))
        self._marks += 1
        name = f"agent-audio-{self._marks}"
        if len(self._names) >= MAX_PENDING_MARKS:
            self._heard_oldest()
        self._names.append(name)
        self._sizes.append(_decoded_length(payload))
        await self._twilio.send_str(twilio_wire.mark(self._stream_sid, name))

    def echoed(self, name: str) -> None:
        """Twilio echoed a mark: the audio up to it has been played (unless it was cleared)."""
        if name in self._cleared:
            self._cleared.discard(name)
            return
        if name not in self._names:
            return  # not one of ours, or already taken as heard
        while self._heard_oldest() != name:
            pass

    async def interrupt(self) -> None:
        """The callee cut the agent off: drop what Twilio still holds, if anything."""
        if not self._names:
            return
        cleared = self.unheard_bytes
        await self._twilio.send_str(twilio_wire.clear(self._stream_sid))
        self._cleared.update(self._names)
        self._names.clear()
        self._sizes.clear()
        self.cleared_bytes += cleared
        self.clears += 1
        log.info(
            "interruption: cleared %d ms of agent audio not yet heard (%d ms heard so far)",
            cleared * 1000 // MULAW_BYTES_PER_SECOND,
            self.heard_bytes * 1000 // MULAW_BYTES_PER_SECOND,
        )
