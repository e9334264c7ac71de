"""The in-process side of one call the sandbox carrier is simulating.

The call itself lives in the database (`store.SandboxCall`, its stage and outbox); this is what
the call's two tasks (the simulation and the courier) and the REST API share while it runs: the
courier's wake-ups and queued callbacks, and the hang-up requests the simulation acts on.
"""

from __future__ import annotations

import asyncio

from bridge.sandbox.store import Callback, SandboxCall


class LiveCall:
    """The in-process side of one call being simulated: its wake-ups and hang-up requests."""

    def __init__(self, sid: str, call: SandboxCall | None = None) -> None:
        self.sid = sid
        # The call as just created, which spares reading it back; None: read it from the log.
        self.created = call
        # A call created by this process has no callbacks left over from an earlier run.
        self.fresh = call is not None
        self.wake = asyncio.Event()  # new callbacks were queued
        # Callbacks committed by this process since the courier last looked, in firing order;
        # the courier reads the outbox itself only once, for what an earlier run left behind.
        self.queued: list[Callback] = []
        self.hangup = asyncio.Event()
        self.requested_status: str | None = None
        self.finished = False
        self._acknowledged: asyncio.Future[None] | None = None

    def request_hangup(self, status: str) -> asyncio.Future[None]:
        if self._acknowledged is None or self._acknowledged.done():
            self._acknowledged = asyncio.get_running_loop().create_future()
        future = self._acknowledged
        if self.finished:
            future.set_result(None)
            return future
        # Hanging up (completed) is the stronger request when both arrive.
        if self.requested_status != "completed":
            self.requested_status = status
        self.hangup.set()
        return future

    def settle(self) -> None:
        self.hangup.clear()
        self.requested_status = None
        if self._acknowledged is not None and not self._acknowledged.done():
            self._acknowledged.set_result(None)
