"""The courier of the sandbox carrier: delivers each call's signed status and AMD callbacks.

Each call has a courier task of its own (started by `call_simulation`), which sends the call's
callbacks from the outbox in firing order, so a slow webhook delays neither the call's own
timeline nor any other call. Injected faults (`faults.CallbackFate`) may drop, delay, duplicate
or reorder a callback, as a real network does.
"""

from __future__ import annotations

import asyncio
import logging

from bridge.sandbox.carrier_senders import Outgoing
from bridge.sandbox.faults import CallbackFate, FaultInjector
from bridge.sandbox.live_call import LiveCall
from bridge.sandbox.store import Callback, CallbackState, CallStore

logger = logging.getLogger(__name__)


class Courier:
    def __init__(self, store: CallStore, faults: FaultInjector, outgoing: Outgoing) -> None:
        self._store = store
        self._faults = faults
        self._outgoing = outgoing

    async def run(self, live: LiveCall) -> None:
        """Deliver the call's queued callbacks in firing order until the call is over.

        Injected faults may drop, delay or duplicate a callback, or hold one back until the
        call's next callback has gone (reordering).
        """
        held: dict[int, tuple[Callback, CallbackFate]] = {}
        # Ids already taken up: what the outbox read returns may also have been handed over.
        taken: set[int] = set()
        first = True
        try:
            while True:
                live.wake.clear()
                # Read before looking: a call that finished by then has all its callbacks in
                # what is seen, while one finishing meanwhile is seen on the next turn.
                finished = live.finished
                found: list[Callback] = []
                if first and not live.fresh:
                    # What an earlier run queued and never delivered (resume).
                    found = await self._store.callbacks(live.sid, pending_only=True)
                first = False
                found += live.queued
                live.queued = []
                pending = []
                for callback in sorted(found, key=lambda cb: cb.id):
                    if callback.id not in taken:
                        taken.add(callback.id)
                        pending.append(callback)
                for callback in pending:
                    if self._outgoing.sender is None:
                        return
                    fate = self._faults.callback_fate()
                    if fate.reorder and not held:
                        held[callback.id] = (callback, fate)
                        continue
                    await self._deliver(callback, fate)
                    for late, late_fate in held.values():
                        await self._deliver(late, late_fate)
                    held.clear()
                if pending:
                    continue
                if finished:
                    for late, late_fate in held.values():
                        await self._deliver(late, late_fate)
                    return
                await live.wake.wait()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("sandbox call %s: callback delivery stopped", live.sid)

    async def _deliver(self, callback: Callback, fate: CallbackFate) -> None:
        sender = self._outgoing.sender
        if sender is None:
            return
        if fate.drop:
            logger.info(
                "sandbox fault: dropping callback %s of %s", callback.event, callback.call_sid
            )
            await self._store.finish_callback(
                callback.id, state=CallbackState.DROPPED, attempts=0, response_status=None
            )
            return
        if fate.delay:
            await asyncio.sleep(fate.delay)
        state, attempts, status = await sender.deliver(callback)
        if fate.duplicate:
            await sender.deliver(callback)
        await self._store.finish_callback(
            callback.id, state=state, attempts=attempts, response_status=status
        )
