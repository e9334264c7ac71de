"""The relay's per-frame audio work, measured in one process: `python -m bench.conversion`.

B6 measures the whole relay over sockets, and on a shared machine its CPU figure moves with
the other tenants' load. This times only what a PCM agent adds to a frame, in a loop: each way,
the message as it arrives, parsed, its audio converted, and the message the relay sends built.
The same loop with a `ulaw_8000` agent (passed through) is the baseline; the difference is
what the conversion costs. CPU time (process_time), the best of several rounds: the least
disturbed by other processes.
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from collections.abc import Callable

import numpy as np

from bridge.media import agent_wire
from bridge.media.audio_formats import audio_path, audioop
from bridge.telephony.twilio import media_wire

FRAMES = 5000  # 100 s of audio each way
ROUNDS = 7
STREAM_SID = "MZ" + "0" * 32


def _tone(rate: int, frames: int, hz: float = 440.0) -> np.ndarray:
    t = np.arange(frames * rate // 50) / rate
    return np.rint(6000 * np.sin(2 * np.pi * hz * t)).astype("<i2")


def messages(audio_format: str, frames: int) -> tuple[list[str], list[str]]:
    """(agent `audio` messages, Twilio `media` messages), 20 ms each, as they arrive."""
    rate = 16000 if audio_format == "pcm_16000" else 8000
    agent_pcm = _tone(rate, frames).tobytes()
    size = rate // 50 * 2
    callee = audioop.lin2ulaw(_tone(8000, frames, 1000.0).tobytes(), 2)
    if audio_format == "ulaw_8000":
        agent_raw = audioop.lin2ulaw(agent_pcm, 2)
        size = 160
    else:
        agent_raw = agent_pcm
    agent = [
        json.dumps(
            {
                "type": "audio",
                "audio_event": {
                    "audio_base_64": base64.b64encode(
                        agent_raw[i * size : (i + 1) * size]
                    ).decode(),
                    "event_id": i + 1,
                },
            }
        )
        for i in range(frames)
    ]
    twilio = [
        json.dumps(
            {
                "event": "media",
                "sequenceNumber": str(i + 2),
                "media": {
                    "track": "inbound",
                    "chunk": str(i + 1),
                    "timestamp": str(i * 20),
                    "payload": base64.b64encode(callee[i * 160 : (i + 1) * 160]).decode(),
                },
                "streamSid": STREAM_SID,
            }
        )
        for i in range(frames)
    ]
    return agent, twilio


def per_frame_us(audio_format: str, frames: int = FRAMES, rounds: int = ROUNDS) -> dict[str, float]:
    """CPU µs per 20 ms frame each way (and both added), the best of ``rounds``."""
    agent, twilio = messages(audio_format, frames)

    # What the relay does with each message (relay.py, playback.py, conversation.py), less
    # the sockets.
    def to_caller() -> None:
        path = audio_path(audio_format, audio_format)
        media = media_wire.MediaMessages(STREAM_SID)
        encoded_here = path.converts_to_caller
        for text in agent:
            event = agent_wire.parse(text)
            assert isinstance(event, agent_wire.Audio)
            for payload in path.to_caller(event.payload):
                media(payload, encoded_here=encoded_here)

    def to_agent() -> None:
        path = audio_path(audio_format, audio_format)
        encoded_here = path.converts_to_agent
        for text in twilio:
            event = media_wire.parse(text)
            assert isinstance(event, media_wire.Media)
            chunk = path.to_agent(event.payload)
            if chunk is not None:
                agent_wire.user_audio(chunk, encoded_here=encoded_here)

    def best(work: Callable[[], None]) -> float:
        times = []
        for _ in range(rounds):
            started = time.process_time()
            work()
            times.append(time.process_time() - started)
        return min(times) / frames * 1e6

    out = {"to_caller": best(to_caller), "to_agent": best(to_agent)}
    out["both"] = out["to_caller"] + out["to_agent"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.conversion", description=__doc__)
    parser.add_argument("--frames", type=int, default=FRAMES)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    results = {f: per_frame_us(f, args.frames, args.rounds) for f in ("ulaw_8000", "pcm_16000")}
    for audio_format, figures in results.items():
        shown = ", ".join(f"{way} {us:.2f} µs" for way, us in figures.items())
        print(f"{audio_format:10} per frame: {shown}")
    added = {
        way: results["pcm_16000"][way] - results["ulaw_8000"][way]
        for way in ("to_caller", "to_agent", "both")
    }
    print("conversion adds per frame: " + ", ".join(f"{w} {us:.2f} µs" for w, us in added.items()))
    # B6 counts each message one way as a frame: a call moves one each way per 20 ms.
    print(f"in B6's terms (a frame one way): {added['both'] / 2:.2f} µs added per frame")


if __name__ == "__main__":
    main()
