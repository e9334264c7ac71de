"""What the callee has heard of the agent's audio, told by the marks Twilio echoes.

Twilio plays the audio it is sent from a buffer, at its own pace: being sent is not being
heard. So a `mark` follows the agent's audio, and Twilio echoes it once the audio before it has
been played. On an interruption, only audio whose mark has not come back (or that has no mark
yet) is still in Twilio's buffer: a `clear` is sent only then. Twilio echoes the marks of the
audio a `clear` dropped at once; those echoes are known for what they are and not counted as
heard.

A mark follows every MARK_EVERY_BYTES of audio (an agent audio event is usually longer, and
gets one of its own); a shorter tail, once no more audio follows it for MARK_AFTER_SECONDS,
gets one too. So the callee's hearing is known to 100 ms, for one small message per 100 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from aiohttp import web

from bridge.telephony.twilio import media_wire

log = logging.getLogger(__name__)

MULAW_BYTES_PER_SECOND = 8000
MARK_EVERY_BYTES = 800  # 100 ms of μ-law 8000
MARK_AFTER_SECONDS = 0.1
# Marks awaiting their echo, at most (five minutes of audio): Twilio echoes them as it plays, so
# more means it stopped echoing; the oldest are then taken as heard, to bound memory.
MAX_PENDING_MARKS = 3000


def _decoded_length(payload: str) -> int:
    """Bytes in a base64 payload, without decoding it."""
    return len(payload) * 3 // 4 - payload[-2:].count("=")


class Playback:
    def __init__(self, twilio: web.WebSocketResponse, stream_sid: str) -> None:
        self._twilio = twilio
        self._stream_sid = stream_sid
        self._media = media_wire.MediaMessages(stream_sid)
        self._marks = 0
        # Marks sent and not echoed, oldest first, and the bytes of audio before each. Two
        # deques of str and int, not one of tuples: nothing the garbage collector must track.
        self._names: deque[str] = deque()
        self._sizes: deque[int] = deque()
        self._cleared: set[str] = set()
        self._unmarked = 0  # bytes sent since the last mark
        self._tail: asyncio.TimerHandle | None = None
        self._tail_marks: set[asyncio.Task[None]] = set()
        self.heard_bytes = 0
        self.cleared_bytes = 0
        self.clears = 0

    @property
    def unheard_bytes(self) -> int:
        return sum(self._sizes) + self._unmarked

    def _heard_oldest(self) -> str:
        self.heard_bytes += self._sizes.popleft()
        return self._names.popleft()

    async def play(self, payload: str, *, encoded_here: bool = False) -> None:
        """Send agent audio to Twilio, and a mark once there is enough audio before it.
        ``encoded_here``: the payload is base64 callbridge made (converted audio)."""
        await self._twilio.send_str(self._media(payload, encoded_here=encoded_here))
        self._unmarked += _decoded_length(payload)
        if self._unmarked >= MARK_EVERY_BYTES:
            await self._mark()
        elif self._tail is None:
            self._tail = asyncio.get_running_loop().call_later(MARK_AFTER_SECONDS, self._mark_tail)

    def _mark_tail(self) -> None:
        self._tail = None
        if self._unmarked and not self._twilio.closed:
            task = asyncio.create_task(self._mark())
            self._tail_marks.add(task)
            task.add_done_callback(self._tail_marks.discard)

    async def _mark(self) -> None:
        if self._tail is not None:
            self._tail.cancel()
            self._tail = None
        if not self._unmarked:
            return
        # Counted and sent with no await between: the mark covers exactly the audio before it.
        self._marks += 1
        name = f"agent-audio-{self._marks}"
        if len(self._names) >= MAX_PENDING_MARKS:
            self._heard_oldest()
        self._names.append(name)
        self._sizes.append(self._unmarked)
        self._unmarked = 0
        with contextlib.suppress(ConnectionError):
            await self._twilio.send_str(media_wire.mark(self._stream_sid, name))

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
        if not self._names and not self._unmarked:
            return
        cleared = self.unheard_bytes
        if self._tail is not None:
            self._tail.cancel()
            self._tail = None
        # Accounted before sending: the echoes the clear causes may come back at once.
        self._cleared.update(self._names)
        self._names.clear()
        self._sizes.clear()
        self._unmarked = 0
        self.cleared_bytes += cleared
        self.clears += 1
        await self._twilio.send_str(media_wire.clear(self._stream_sid))
        log.info(
            "interruption: cleared %d ms of agent audio not yet heard (%d ms heard so far)",
            cleared * 1000 // MULAW_BYTES_PER_SECOND,
            self.heard_bytes * 1000 // MULAW_BYTES_PER_SECOND,
        )
