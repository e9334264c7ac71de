"""The simulation of each call the sandbox carrier places or receives.

Each call is simulated by its own task, in stages recorded in the database (`store.Stage`), so a
restarted service carries unfinished calls on from where they were: an outbound call is
initiated, rings, is answered (or not) as the number table says (`sandbox.number_table`), asks
the application for its TwiML, reports the answering-machine verdict, plays a Media Stream and
hangs up; a received call rings while the number's voice URL is asked what to do, and lasts until
either side hangs up. Every state change is committed with the callbacks it fires, which a
second task per call, the `courier.Courier`, delivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import uuid
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime, timedelta
from typing import Any

from bridge.sandbox import account, wire
from bridge.sandbox.carrier_senders import Outgoing
from bridge.sandbox.courier import Courier
from bridge.sandbox.delivery import loggable_url
from bridge.sandbox.live_call import LiveCall
from bridge.sandbox.number_table import (
    SimulatedOutcome,
    follow_up_words,
    planned_outcome,
    rule_for,
)
from bridge.sandbox.recent import Recent
from bridge.sandbox.store import CallSettings, CallStore, SandboxCall, Stage, new_call
from bridge.sandbox.stream_caller import TwimlPlan, read_twiml
from campaigns.clock import utcnow
from campaigns.phones import mask
from campaigns.tasks import TaskSet

logger = logging.getLogger(__name__)

# The voice URL of one of the account's numbers (None: not set).
VoiceUrl = Callable[[str], str | None]


def is_inbound(call: SandboxCall) -> bool:
    """True for a call the account received (rather than placed)."""
    return wire.direction(call) == wire.INBOUND


class CallSimulator:
    """Runs every call's simulation and courier as tasks, and knows the calls it is running."""

    def __init__(
        self,
        store: CallStore,
        outgoing: Outgoing,
        courier: Courier,
        *,
        account_sid: str,
        ring_seconds: float,
        talk_seconds: float,
        voice_url: str | None,
        voice_status_callback: str | None,
        records_limit: int,
    ) -> None:
        self._store = store
        self._outgoing = outgoing
        self._courier = courier
        self._account_sid = account_sid
        self._ring = timedelta(seconds=max(ring_seconds, 0.0))
        self._talk = timedelta(seconds=max(talk_seconds, 0.0))
        # Where the account's numbers send the calls they receive, and their status callbacks.
        self._voice_url = voice_url
        self._voice_status_callback = voice_status_callback
        self._live: dict[str, LiveCall] = {}
        self._tasks = TaskSet()
        # What each received call was told by <Say>: the newest calls' only, for inspection.
        self.said: Recent[str, list[str]] = Recent(records_limit)
        self.running = False

    @property
    def live_calls(self) -> int:
        return len(self._live)

    @property
    def tasks(self) -> int:
        return len(self._tasks)

    def voice_url_of(self, number: str) -> str | None:
        """The voice URL of one of the account's numbers."""
        if number == wire.UNCONFIGURED_NUMBER:
            return wire.DEMO_VOICE_URL
        return self._voice_url

    async def resume(self) -> None:
        """Carry on every call a previous run left unfinished."""
        if not self.running:
            return
        unfinished = await self._store.unfinished_sids()
        for sid in unfinished:
            self.launch(sid)
        if unfinished:
            logger.info("sandbox carrier resumed %d unfinished call(s)", len(unfinished))

    async def stop(self) -> None:
        """Stop simulating (calls stay in the log, to be resumed by the next start)."""
        self.running = False
        await self._tasks.drain()
        self._live.clear()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Future[Any]:
        return self._tasks.spawn(coro, name=name)

    def launch(self, sid: str, created: SandboxCall | None = None) -> LiveCall | None:
        """The live simulation of a call, started if needed; None while the carrier is stopped."""
        if not self.running:
            return None
        live = self._live.get(sid)
        if live is None:
            live = LiveCall(sid, created)
            self._live[sid] = live
            self._spawn(self._run_call(live), f"sandbox-call-{sid}")
        return live

    async def place_inbound(self, caller: str, called: str) -> SandboxCall:
        """A person at ``caller`` calls ``called``, one of the account's numbers."""
        caller_e164 = wire.e164(caller)
        if caller_e164 is None:
            raise wire.TwilioError(400, 21212, f"From {caller!r} is not a valid phone number")
        number = account.owned_number(called)
        if number is None:
            raise wire.TwilioError(404, 20404, f"{called!r} is not a number of this account")
        settings = CallSettings(
            to_number=number,
            from_number=caller_e164,
            url=self.voice_url_of(number),
            status_callback=self._voice_status_callback,
            # A number's status callback reports the end of each call it receives.
            status_callback_events=["completed"],
            machine_detection=None,
            async_amd=False,
            async_amd_status_callback=None,
            timeout=wire.DEFAULT_TIMEOUT,
            time_limit=wire.DEFAULT_TIME_LIMIT,
            params={wire.DIRECTION_PARAM: wire.INBOUND},
        )
        sid = "CA" + uuid.uuid4().hex
        call = await self._store.insert_call(
            new_call(sid, self._account_sid, settings, "ringing", utcnow())
        )
        logger.info("sandbox call %s from %s to %s received", call.sid, mask(caller_e164), number)
        self.launch(call.sid, call)
        return call

    async def _call_back_later(self, caller: str, called: str, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self.place_inbound(caller, called)
        except wire.TwilioError as error:
            logger.info("sandbox call back from %s not placed: %s", mask(caller), error.message)

    # ------------------------------------------------------------------ one call

    async def _run_call(self, live: LiveCall) -> None:
        courier = self._spawn(self._courier.run(live), f"sandbox-callbacks-{live.sid}")
        try:
            try:
                await self._simulate(live)
            except Exception:
                logger.exception("sandbox call %s stopped unexpectedly", live.sid)
            finally:
                live.finished = True
                live.wake.set()
                live.settle()
            await courier
        finally:
            if self._live.get(live.sid) is live:
                del self._live[live.sid]

    async def _simulate(self, live: LiveCall) -> None:
        call = live.created or await self._store.get(live.sid)
        live.created = None
        if call is None:
            return
        inbound = is_inbound(call)
        outcome = planned_outcome(call.to_number, call.attempt_number)
        while call.stage != Stage.ENDED:
            if live.hangup.is_set():
                call = await self.hang_up(call, live.requested_status or "canceled")
                live.settle()
                continue
            if inbound:
                call = await self._advance_inbound(call, live)
            else:
                call = await self._advance(call, outcome, live)
        if inbound or outcome.name != "voicemail" or call.status != "completed":
            return
        delay = rule_for(call.to_number).calls_back_after_seconds
        if delay is not None:
            # The person heard the voicemail's message light and calls the number back.
            self._spawn(
                self._call_back_later(call.to_number, call.from_number, delay),
                f"sandbox-call-back-{call.sid}",
            )

    async def _advance_inbound(self, call: SandboxCall, live: LiveCall) -> SandboxCall:
        """Carry a received call through its next stage: it rings while the number's voice URL
        is asked what to do, is answered with the TwiML, and lasts until either side hangs up."""
        match call.stage:
            case Stage.CREATED:
                return await self._store.transition(
                    call, {"stage": Stage.RINGING, "start_time": utcnow()}
                )
            case Stage.RINGING:
                plan = await self._voice_request(call)
                if plan is None:
                    # Twilio tells the caller an application error occurred, and hangs up.
                    return await self._end(call, "failed", "11200")
                answered = {"stage": Stage.ANSWERED, "status": "in-progress"}
                changes = {**answered, "answered_at": utcnow()}
                call = await self._move(call, changes, "answered", call_status="in-progress")
                self._follow(call, plan, callee="human")
                return call
            case Stage.ANSWERED | Stage.TWIML | Stage.AMD:
                if await self._pause(live, (call.answered_at or utcnow()) + self._talk_time(call)):
                    return call
                return await self._end(call, "completed")
        raise ValueError(f"sandbox call {call.sid} has an unknown stage {call.stage!r}")

    async def _voice_request(self, call: SandboxCall) -> TwimlPlan | None:
        """Ask the number's voice URL about a received call; None if it gave no TwiML."""
        if not call.url or call.url == wire.DEMO_VOICE_URL or self._outgoing.sender is None:
            # Twilio's demo answers with a greeting of its own; nothing here to ask.
            return TwimlPlan(hangup=True, said=("Twilio demo greeting",)) if call.url else None
        reply = await self._outgoing.sender.request(
            call.url,
            "POST",
            wire.call_params(call, "ringing"),
            kind="twiml",
            keep_reply=True,
        )
        if not reply.ok:
            logger.warning(
                "sandbox call %s: voice URL %s answered %s",
                call.sid,
                loggable_url(call.url),
                reply.status,
            )
            return None
        return read_twiml(reply.text)

    async def _advance(
        self, call: SandboxCall, outcome: SimulatedOutcome, live: LiveCall
    ) -> SandboxCall:
        """Carry the call through its next stage; returns it unchanged if a hang-up interrupted."""
        match call.stage:
            case Stage.CREATED:
                return await self._move(
                    call, {"stage": Stage.INITIATED, "start_time": utcnow()}, "initiated"
                )
            case Stage.INITIATED:
                if not outcome.rings:
                    return await self._end(call, outcome.final_status, outcome.error_code)
                return await self._move(
                    call, {"stage": Stage.RINGING, "status": "ringing"}, "ringing"
                )
            case Stage.RINGING:
                if await self._pause(live, (call.start_time or utcnow()) + self._ring_time(call)):
                    return call
                if not outcome.answered:
                    return await self._end(call, outcome.final_status, outcome.error_code)
                changes = {
                    "stage": Stage.ANSWERED,
                    "status": "in-progress",
                    "answered_at": utcnow(),
                    "answered_by": outcome.answered_by_for(call.machine_detection),
                }
                return await self._move(call, changes, "answered", call_status="in-progress")
            case Stage.ANSWERED:
                if not await self._fetch_twiml(call):
                    # Twilio speaks its application-error message and hangs up.
                    return await self._end(call, "completed")
                return await self._store.transition(call, {"stage": Stage.TWIML})
            case Stage.TWIML:
                return await self._move(
                    call, {"stage": Stage.AMD}, extra_callbacks=self._amd_callback(call, outcome)
                )
            case Stage.AMD:
                if await self._pause(live, (call.answered_at or utcnow()) + self._talk_time(call)):
                    return call
                return await self._end(call, "completed")
        raise ValueError(f"sandbox call {call.sid} has an unknown stage {call.stage!r}")

    def _ring_time(self, call: SandboxCall) -> timedelta:
        return min(self._ring, timedelta(seconds=call.timeout))

    def _talk_time(self, call: SandboxCall) -> timedelta:
        return min(self._talk, timedelta(seconds=call.time_limit))

    @staticmethod
    async def _pause(live: LiveCall, until: datetime) -> bool:
        """Wait until `until` or a hang-up request, whichever comes first; True on a hang-up."""
        remaining = (until - utcnow()).total_seconds()
        if remaining > 0 and not live.hangup.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(live.hangup.wait(), remaining)
        return live.hangup.is_set()

    async def hang_up(self, call: SandboxCall, requested: str) -> SandboxCall:
        """Apply ``Status=canceled|completed`` to the call as it stands now."""
        if call.status == "queued":
            # Never dialled: Twilio cancels it without a single callback.
            changes = {"status": "canceled", "stage": Stage.ENDED, "end_time": utcnow()}
            changes["duration"] = 0
            logger.info("sandbox call %s canceled while queued", call.sid)
            return await self._store.transition(call, changes)
        if call.status == "ringing":
            return await self._end(call, "canceled")
        if call.status == "in-progress" and requested == "completed":
            return await self._end(call, "completed")
        # Canceling a call that is already answered has no effect.
        return call

    async def _end(
        self, call: SandboxCall, final_status: str, error_code: str | None = None
    ) -> SandboxCall:
        if self._outgoing.streams is not None:
            # The callee hangs up: its media stream (if any) stops first.
            await self._outgoing.streams.stop(call.sid)
        now = utcnow()
        duration = 0
        if call.answered_at is not None:
            # Any answered call lasts at least a second in Twilio's records.
            duration = max(1, math.ceil((now - call.answered_at).total_seconds()))
        changes = {
            "status": final_status,
            "stage": Stage.ENDED,
            "end_time": now,
            "duration": duration,
        }
        logger.info(
            "sandbox call %s to %s ended: %s (%d s)",
            call.sid,
            mask(call.to_number),
            final_status,
            duration,
        )
        extra = wire.terminal_params(final_status, duration, error_code)
        return await self._move(call, changes, "completed", call_status=final_status, extra=extra)

    def _subscribed(self, call: SandboxCall, event: str) -> bool:
        if not call.status_callback:
            return False
        # Without StatusCallbackEvent Twilio reports only the end of the call.
        return event in (call.status_callback_events or ["completed"])

    async def _move(
        self,
        call: SandboxCall,
        changes: dict[str, Any],
        event: str | None = None,
        *,
        call_status: str | None = None,
        extra: dict[str, str] | None = None,
        extra_callbacks: Sequence[dict[str, Any]] = (),
    ) -> SandboxCall:
        """Commit a state change with the callbacks it fires, then wake the call's courier."""
        callbacks = list(extra_callbacks)
        if event is not None and call.status_callback and self._subscribed(call, event):
            stamps = ("end_time", "answered_at", "start_time")
            at = next((changes[key] for key in stamps if changes.get(key)), utcnow())
            params = wire.progress_params(call, call_status or event, call.sequence, at)
            params.update(extra or {})
            callbacks.insert(
                0,
                self._callback(
                    event,
                    call.status_callback,
                    wire.request_method(call, "StatusCallbackMethod"),
                    params,
                    sequence_number=call.sequence,
                ),
            )
            changes = {**changes, "sequence": call.sequence + 1}
        moved, queued = await self._store.transition_queueing(call, changes, callbacks)
        live = self._live.get(call.sid)
        if queued and live is not None:
            live.queued.extend(queued)
            live.wake.set()
        return moved

    @staticmethod
    def _callback(
        event: str,
        url: str,
        method: str,
        params: dict[str, str],
        *,
        sequence_number: int | None = None,
    ) -> dict[str, Any]:
        return {
            "event": event,
            "sequence_number": sequence_number,
            "url": url,
            "method": method,
            "params": params,
            "idempotency_token": secrets.token_hex(16),
        }

    def _amd_callback(self, call: SandboxCall, outcome: SimulatedOutcome) -> list[dict[str, Any]]:
        if not (call.async_amd and call.async_amd_status_callback and call.answered_by):
            return []
        params = wire.amd_params(call, call.answered_by, outcome.amd_duration_ms)
        method = wire.request_method(call, "AsyncAmdStatusCallbackMethod")
        return [self._callback("amd", call.async_amd_status_callback, method, params)]

    async def _fetch_twiml(self, call: SandboxCall) -> bool:
        """Ask the application what to do with the answered call; False if it did not say."""
        if not call.url or self._outgoing.sender is None:
            return True
        # Synchronous AMD finishes before the TwiML request, which then carries the verdict.
        answered_by = None if call.async_amd else call.answered_by
        detection_ms = planned_outcome(call.to_number, call.attempt_number).amd_duration_ms
        reply = await self._outgoing.sender.request(
            call.url,
            wire.request_method(call, "Method"),
            wire.twiml_params(call, answered_by, detection_ms),
            kind="twiml",
        )
        if not reply.ok:
            logger.warning(
                "sandbox call %s: TwiML request to %s failed (status %s); hanging up",
                call.sid,
                loggable_url(call.url),
                reply.status,
            )
            return False
        self._follow_twiml(call, reply.text)
        return True

    def _follow_twiml(self, call: SandboxCall, text: str) -> None:
        """Act on the answered call's TwiML: play a `<Connect><Stream>`, or hang up."""
        callee = planned_outcome(call.to_number, call.attempt_number).name
        self._follow(call, read_twiml(text), callee)

    def _follow(self, call: SandboxCall, plan: TwimlPlan, callee: str) -> None:
        # A person on some numbers asks for a follow-up once they answer (FOLLOW_UP_TABLE).
        words = follow_up_words(call.to_number, utcnow()) if callee == "human" else None
        live = self._live.get(call.sid)
        if plan.said:
            self.said.setdefault(call.sid, []).extend(plan.said)
        if live is None or self._outgoing.streams is None:
            return
        if plan.stream is not None:
            self._outgoing.streams.start(
                call.sid,
                plan.stream,
                callee,
                lambda: live.request_hangup("completed"),
                words,
            )
        elif plan.hangup or (plan.said and is_inbound(call)):
            # With its TwiML said and nothing left to do, Twilio ends the call.
            live.request_hangup("completed")
