"""The sandbox agent's call recording: the MP3 a `post_call_audio` webhook carries.

ElevenLabs sends the whole conversation's audio as base64 MP3 (`data.full_audio`). The sandbox
keeps no audio of its calls, so its recording is silence of the call's length, encoded by LAME
(lameenc) into a real MP3 stream that any decoder a user tries on it will accept.
"""

from __future__ import annotations

import base64

import lameenc

SAMPLE_RATE = 8000
BIT_RATE_KBPS = 16
# Silence compresses to almost nothing, but a runaway duration must not cost much memory.
MAX_SECONDS = 600


def silent_mp3(seconds: int) -> bytes:
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(BIT_RATE_KBPS)
    encoder.set_in_sample_rate(SAMPLE_RATE)
    encoder.set_channels(1)
    encoder.set_quality(7)  # speed over fidelity: it is silence
    samples = max(1, min(seconds, MAX_SECONDS)) * SAMPLE_RATE
    return bytes(encoder.encode(bytes(2 * samples)) + encoder.flush())


def full_audio(seconds: int) -> str:
    """``data.full_audio``: the recording of a call that lasted ``seconds``, base64 MP3."""
    return base64.b64encode(silent_mp3(seconds)).decode("ascii")
