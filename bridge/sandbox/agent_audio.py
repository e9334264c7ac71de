"""Generated μ-law audio for the sandbox's two sides of a call.

Frames are 20 ms (160 bytes of μ-law 8000). Speech is deterministic noise, so either side can
count and order what it heard; a voicemail box plays a greeting and then a beep, which the
sandbox agent recognises the way a voicemail detector would.
"""

from __future__ import annotations

import hashlib

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


def speech(speaker: str, index: int) -> bytes:
    """The ``index``-th frame of ``speaker``'s speech."""
    seed = f"{speaker}:{index}".encode()
    out = bytearray()
    counter = 0
    while len(out) < FRAME_BYTES:
        out += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return bytes(out[:FRAME_BYTES])


def is_beep(frame: bytes) -> bool:
    return frame == BEEP


def is_silence(frame: bytes) -> bool:
    return frame == SILENCE


def callee_frame(kind: str, index: int) -> bytes:
    """What the answering side says: a person speaks, then listens; a voicemail box greets,
    then beeps."""
    if kind == "voicemail":
        return BEEP if index >= VOICEMAIL_GREETING_FRAMES else speech("callee-voicemail", index)
    return SILENCE if index >= HELLO_FRAMES else speech(f"callee-{kind}", index)
