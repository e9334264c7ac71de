"""Generated μ-law audio for the sandbox's two sides of a call.

Frames are 20 ms (160 bytes of μ-law 8000). The callee's speech is deterministic noise, so
either side can count and order what it heard; a voicemail box plays a greeting and then a beep,
which the sandbox agent recognises the way a voicemail detector would. The agent speaks a steady
tone (its profile's frequency) in its own output format, so that what a conversion did to it
can be measured; it hears in its own input format, turned back into μ-law 8000 frames for its
conversation logic (Ear).
"""

from __future__ import annotations

import base64
import hashlib
import math

import numpy as np

from bridge.media import audio_formats
from bridge.media.audio_formats import PCM_RATES, ULAW_8000, audioop

FRAME_BYTES = 160
FRAME_MS = 20
# The agent's own greeting (0.5 s): long enough to be still playing when the callee talks over
# it, however loaded the machine, so the relay has unheard audio to clear.
GREETING_FRAMES = 25
# A person says "Hello?" (0.2 s) and waits; a voicemail box talks for 2 s before its beep, long
# enough for answering-machine detection to act first when the campaign uses it.
HELLO_FRAMES = 10
VOICEMAIL_GREETING_FRAMES = 100
# The beep is one steady tone: the same byte over the whole frame, which speech never is.
BEEP = bytes([0x2A]) * FRAME_BYTES
SILENCE = bytes([0xFF]) * FRAME_BYTES  # μ-law zero
# Audio that went through a resampler is not byte for byte what was sent: its silence keeps a
# trace of what came before it, so a frame counts as silence below this peak (about -54 dBFS).
SILENCE_PEAK = 64
# The agent's tone: about -15 dBFS at its peaks, well clear of clipping after a resampler.
TONE_AMPLITUDE = 6000


def speech(speaker: str, index: int) -> bytes:
    """The ``index``-th frame of ``speaker``'s speech."""
    seed = f"{speaker}:{index}".encode()
    out = bytearray()
    counter = 0
    while len(out) < FRAME_BYTES:
        out += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return bytes(out[:FRAME_BYTES])


def _linear(frame: bytes) -> bytes:
    return audioop.ulaw2lin(frame, 2)


def is_beep(frame: bytes) -> bool:
    # A steady level: after a resampler too, once it has settled, the same byte throughout.
    return frame == BEEP


def is_silence(frame: bytes) -> bool:
    return frame == SILENCE or audioop.max(_linear(frame), 2) <= SILENCE_PEAK


def bytes_per_second(audio_format: str) -> int:
    rate = PCM_RATES.get(audio_format)
    return 2 * rate if rate is not None else audio_formats.TWILIO_RATE


def can_speak(audio_format: str) -> bool:
    return audio_format == ULAW_8000 or audio_format in PCM_RATES


class Voice:
    """The agent's voice: a sine at ``tone_hz``, 20 ms at a time, in ``audio_format``. The phase
    runs on from frame to frame over the whole conversation, so the tone itself never jumps."""

    def __init__(self, audio_format: str, tone_hz: float) -> None:
        self.audio_format = audio_format
        self._rate = PCM_RATES.get(audio_format, audio_formats.TWILIO_RATE)
        self._step = 2 * math.pi * tone_hz / self._rate
        self._per_frame = self._rate * FRAME_MS // 1000
        self._sample = 0

    def frame(self) -> bytes | None:
        """The next 20 ms, or None for a format the sandbox cannot make (the agent is silent)."""
        if not can_speak(self.audio_format):
            return None
        index = np.arange(self._sample, self._sample + self._per_frame)
        self._sample += self._per_frame
        samples = np.rint(TONE_AMPLITUDE * np.sin(self._step * index)).astype("<i2").tobytes()
        if self.audio_format == ULAW_8000:
            return audioop.lin2ulaw(samples, 2)
        return samples


class Ear:
    """What the agent hears, in its input format, as μ-law 8000 frames for its conversation
    logic (μ-law 8000 itself is handed on as it came)."""

    def __init__(self, audio_format: str) -> None:
        rate = PCM_RATES.get(audio_format)
        self._convert = audio_formats.ToCaller(rate) if rate is not None else None
        self._understood = audio_format == ULAW_8000 or rate is not None

    def frames(self, chunk: bytes) -> list[bytes]:
        if self._convert is not None:
            encoded = base64.b64encode(chunk).decode()
            return [base64.b64decode(f) for f in self._convert.convert(encoded)]
        if self._understood:
            return [chunk]
        # Audio in a format it cannot decode: it counts as having heard something.
        return [speech("undecodable", 0)]


# A person's request travels in every frame of their speech, after this mark, as the words a
# transcriber would hear (number_table.follow_up_words); the rest of each frame is speech.
WORDS_MARK = b"\x01\x02SAYS:"
WORDS_LIMIT = FRAME_BYTES - len(WORDS_MARK) - 1


def saying(words: str, index: int) -> bytes:
    """A frame of speech that carries ``words`` (at most WORDS_LIMIT bytes of UTF-8)."""
    text = words.encode()[:WORDS_LIMIT]
    head = WORDS_MARK + text + b"\x00"
    return head + speech("callee-words", index)[len(head) :]


def words_in(frame: bytes) -> str | None:
    """The words a frame carries, or None. Only audio that reached the agent unconverted (μ-law
    all the way) carries them: a resampled frame is not understood, as a garbled line is not."""
    if not frame.startswith(WORDS_MARK):
        return None
    return frame[len(WORDS_MARK) :].split(b"\x00", 1)[0].decode(errors="replace")


def callee_frame(kind: str, index: int, words: str | None = None) -> bytes:
    """What the answering side says: a person speaks (``words``, if they ask for something),
    then listens; a voicemail box greets, then beeps."""
    if words and kind == "human" and index < HELLO_FRAMES:
        return saying(words, index)
    if kind == "voicemail":
        return BEEP if index >= VOICEMAIL_GREETING_FRAMES else speech("callee-voicemail", index)
    return SILENCE if index >= HELLO_FRAMES else speech(f"callee-{kind}", index)
