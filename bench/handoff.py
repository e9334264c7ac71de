"""What handing one agent frame to another task costs: `python -m bench.handoff`.

Until 2026-11-26 the relay passed each agent audio event from the conversation's reader task
through an asyncio.Queue to a second task that sent it to Twilio: two task wake-ups per frame.
Now the reader awaits the send itself (bridge/media/conversation.py). This times the two shapes
in one process, without sockets or audio: a reader woken once per frame (`asyncio.sleep(0)`
stands for the socket's wake-up) that either puts the frame in a queue for a consumer task, or
awaits the sink directly. CPU time (process_time), the best of several rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

FRAMES = 50_000
ROUNDS = 7


class _Sink:
    def __init__(self) -> None:
        self.frames = 0

    async def audio(self, frame: int) -> None:
        self.frames += 1


async def through_queue(frames: int) -> None:
    """The former shape: reader -> queue -> sending task."""
    queue: asyncio.Queue[int | None] = asyncio.Queue()
    sink = _Sink()

    async def sender() -> None:
        while (frame := await queue.get()) is not None:
            await sink.audio(frame)

    sending = asyncio.create_task(sender())
    for frame in range(frames):
        queue.put_nowait(frame)
        await asyncio.sleep(0)
    queue.put_nowait(None)
    await sending


async def direct(frames: int) -> None:
    """The reader awaits the sink itself."""
    sink = _Sink()
    for frame in range(frames):
        await sink.audio(frame)
        await asyncio.sleep(0)


def per_frame_us(shape: Callable[[int], Awaitable[None]], frames: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        asyncio.run(shape(frames))  # type: ignore[arg-type]
        best = min(best, time.process_time() - started)
    return best / frames * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.handoff", description=__doc__)
    parser.add_argument("--frames", type=int, default=FRAMES)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    queued = per_frame_us(through_queue, args.frames, args.rounds)
    awaited = per_frame_us(direct, args.frames, args.rounds)
    print(f"queue + second task: {queued:.2f} µs per frame")
    print(f"awaited by the reader: {awaited:.2f} µs per frame")
    print(f"the hand-off cost: {queued - awaited:.2f} µs per agent frame")


if __name__ == "__main__":
    main()
