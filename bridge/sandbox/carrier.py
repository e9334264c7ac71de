"""A local Twilio-compatible Calls API that simulates every call it is asked to place.

The real twilio SDK talks to it (point ``client.api.base_url`` at ``…/sandbox``), and it posts
signed status, TwiML and AMD requests back the way Twilio does, so the demo, the tests and
users' rehearsals exercise the production dialer and webhook code. How each call ends is given by
`bridge.sandbox.outcomes`.

It also receives calls: ``POST /sandbox/inbound`` (or a call-back rule of the outcome table) has
a person call one of the account's numbers; the carrier asks that number's voice URL what to do,
signed, and plays the caller over a Media Stream or hears the `<Say>`, as Twilio would.

Each call is simulated by its own task, in stages recorded in the database (`store.Stage`), so a
restarted service carries unfinished calls on from where they were. A second task per call
delivers that call's callbacks from the outbox, in firing order, so a slow webhook delays neither
the call's own timeline nor any other call.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import logging
import math
import secrets
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import hdrs, web
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.sandbox import account, wire
from bridge.sandbox.delivery import JOURNAL_LIMIT, Sender, loggable_url
from bridge.sandbox.faults import CallbackFate, CreateFault, FaultInjector, Faults
from bridge.sandbox.inspection import InspectionGuard, guarded
from bridge.sandbox.outcomes import (
    SimulatedOutcome,
    follow_up_words,
    planned_outcome,
    rule_for,
)
from bridge.sandbox.recent import DEFAULT_RECORDS, Recent
from bridge.sandbox.store import (
    Callback,
    CallbackState,
    CallStore,
    CreateAbandoned,
    SandboxCall,
    Stage,
    ensure_schema,
)
from bridge.sandbox.stream_caller import StreamPlayer, TwimlPlan, read_twiml
from campaigns.clock import utcnow
from campaigns.phones import mask

logger = logging.getLogger(__name__)

# A create not stored this long after it was taken up is abandoned (503, nothing created).
CREATE_DEADLINE_SECONDS = 4.0
# How long a hang-up request waits for the call's task to act on it before answering anyway.
HANGUP_WAIT_SECONDS = 5.0


class _LiveCall:
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


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    login, separator, password = decoded.partition(":")
    return (login, password) if separator else None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# The installation's stored auth token, or None while none is stored.
TokenSource = Callable[[], Awaitable[str | None]]
TOKEN_RECHECK_SECONDS = 1.0


@web.middleware
async def _twilio_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except wire.TwilioError as error:
        return error.response()
    except CreateAbandoned:
        return wire.TwilioError(503, 20503, "Service Unavailable").response()


class SandboxCarrier:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        account_sid: str,
        auth_token: str,
        ring_seconds: float,
        talk_seconds: float,
        callback_retry_delay: float = 1.0,
        faults: Faults | None = None,
        installation_token: TokenSource | None = None,
        inspection_guard: InspectionGuard | None = None,
        voice_url: str | None = None,
        voice_status_callback: str | None = None,
        records_limit: int = DEFAULT_RECORDS,
        journal_limit: int = JOURNAL_LIMIT,
    ) -> None:
        self._engine = engine
        self._faults = FaultInjector(faults or Faults())
        self._store = CallStore(engine)
        self._account_sid = account_sid
        self._auth_token = auth_token
        # Run apart from the nodes, the carrier learns the installation's auth token from the
        # database: at start, and again when a request presents another token (the nodes may
        # have created it after this process started).
        self._installation_token = installation_token
        self._token_checked_at = -math.inf
        self._inspection_guard = inspection_guard
        self._ring = timedelta(seconds=max(ring_seconds, 0.0))
        self._talk = timedelta(seconds=max(talk_seconds, 0.0))
        self._retry_delay = callback_retry_delay
        self._session: aiohttp.ClientSession | None = None
        self._sender: Sender | None = None
        self._streams: StreamPlayer | None = None
        self._live: dict[str, _LiveCall] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # Kept for inspection after the call: the newest ``records_limit`` calls' only.
        self._records_limit = records_limit
        self._journal_limit = journal_limit
        self._twiml_updates: Recent[str, list[str]] = Recent(records_limit)
        # Where the account's numbers send the calls they receive, and their status callbacks.
        self._voice_url = voice_url
        self._voice_status_callback = voice_status_callback
        # What each received call was told by <Say>: the newest calls' only, for inspection.
        self._said: Recent[str, list[str]] = Recent(records_limit)
        self._running = False

    @property
    def store(self) -> CallStore:
        return self._store

    async def prune(self, before: datetime) -> int:
        """Forget ended calls (and their callbacks) created before ``before``: retention."""
        return await self._store.prune(before)

    def memory(self) -> dict[str, tuple[int, int | None]]:
        """What this carrier holds in memory: structure -> (entries, limit or None)."""
        sizes: dict[str, tuple[int, int | None]] = {
            "sandbox_live_calls": (len(self._live), None),
            "sandbox_tasks": (len(self._tasks), None),
            "sandbox_twiml_updates": (len(self._twiml_updates), self._records_limit),
            "sandbox_inbound_said": (len(self._said), self._records_limit),
            "sandbox_store_queue": (self._store.queued, None),
        }
        if self._sender is not None:
            sizes["sandbox_sent_journal"] = (len(self._sender.journal), self._journal_limit)
        if self._streams is not None:
            sizes["sandbox_stream_stats"] = (len(self._streams.stats), self._records_limit)
            sizes["sandbox_streams"] = (self._streams.playing, None)
        return sizes

    # ------------------------------------------------------------------ lifecycle

    def app(self) -> web.Application:
        """The sub-application; mount it with ``app.add_subapp("/sandbox", carrier.app())``."""
        app = web.Application(middlewares=[_twilio_errors])
        calls = f"/{wire.API_VERSION}/Accounts/{{account_sid}}/Calls"
        app.router.add_post(f"{calls}.json", self._create_call)
        app.router.add_get(f"{calls}.json", self._list_calls)
        app.router.add_get(f"{calls}/{{sid}}.json", self._fetch_call)
        app.router.add_post(f"{calls}/{{sid}}.json", self._update_call)
        account.add_routes(app, self._authenticate, self.voice_url_of)
        # Inspection (full numbers, TwiML with dynamic variables): behind the guard, if any.
        inspect = guarded(self._inspection_guard)
        app.router.add_get("/calls", inspect(self._inspect_calls))
        app.router.add_get("/calls/{sid}/callbacks", inspect(self._inspect_callbacks))
        app.router.add_get("/calls/{sid}/media", inspect(self._inspect_media))
        app.router.add_get("/calls/{sid}/twiml", inspect(self._inspect_twiml))
        app.router.add_get("/sent", inspect(self._inspect_sent))
        # Not Twilio's API: the sandbox's way of having a person call one of the numbers.
        app.router.add_post("/inbound", inspect(self._inbound))
        return app

    def voice_url_of(self, number: str) -> str | None:
        """The voice URL of one of the account's numbers."""
        if number == wire.UNCONFIGURED_NUMBER:
            return wire.DEMO_VOICE_URL
        return self._voice_url

    async def start(self, *, resume: bool = True) -> None:
        """Create the tables if needed and (unless ``resume`` is False, leaving it to a later
        `resume`) carry on every call a previous run left unfinished."""
        if self._running:
            return
        await ensure_schema(self._engine)
        if self._installation_token is not None:
            await self._refresh_token(force=True)
        self._session = aiohttp.ClientSession()
        self._sender = Sender(
            self._session,
            self._auth_token,
            retry_delay=self._retry_delay,
            journal_limit=self._journal_limit,
        )
        self._streams = StreamPlayer(
            self._session, self._account_sid, self._auth_token, records_limit=self._records_limit
        )
        self._running = True
        if resume:
            await self.resume()

    async def resume(self) -> None:
        """Carry on every call a previous run left unfinished."""
        if not self._running:
            return
        unfinished = await self._store.unfinished_sids()
        for sid in unfinished:
            self._launch(sid)
        if unfinished:
            logger.info("sandbox carrier resumed %d unfinished call(s)", len(unfinished))

    async def close(self) -> None:
        """Stop simulating (calls stay in the log, to be resumed by the next start)."""
        self._running = False
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._live.clear()
        await self._store.close()
        if self._streams is not None:
            await self._streams.close()
            self._streams = None
        if self._session is not None:
            await self._session.close()
            self._session = None
            self._sender = None

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _launch(self, sid: str, created: SandboxCall | None = None) -> _LiveCall | None:
        """The live simulation of a call, started if needed; None while the carrier is stopped."""
        if not self._running:
            return None
        live = self._live.get(sid)
        if live is None:
            live = _LiveCall(sid, created)
            self._live[sid] = live
            self._spawn(self._run_call(live), f"sandbox-call-{sid}")
        return live

    # ------------------------------------------------------------------ REST API

    async def _authenticate(self, request: web.Request) -> str:
        """The AccountSid of a request with valid HTTP Basic credentials for its own account."""
        credentials = _basic_credentials(request.headers.get(hdrs.AUTHORIZATION, ""))
        if credentials is None:
            raise wire.authentication_error()
        login, password = credentials
        if self._credentials_match(request, login, password):
            return login
        if await self._refresh_token() and self._credentials_match(request, login, password):
            return login
        raise wire.authentication_error()

    def _credentials_match(self, request: web.Request, login: str, password: str) -> bool:
        # Both comparisons run every time, so timing says nothing about which one failed.
        sid_ok = hmac.compare_digest(login.encode(), self._account_sid.encode())
        token_ok = hmac.compare_digest(password.encode(), self._auth_token.encode())
        return sid_ok and token_ok and request.match_info["account_sid"] == login

    async def _refresh_token(self, *, force: bool = False) -> bool:
        """Adopt the installation's stored auth token if it changed; True if it did. Asked at
        most once a second, so bad credentials cannot make the carrier hammer the database."""
        if self._installation_token is None:
            return False
        now = asyncio.get_running_loop().time()
        if not force and now - self._token_checked_at < TOKEN_RECHECK_SECONDS:
            return False
        self._token_checked_at = now
        token = await self._installation_token()
        if not token or token == self._auth_token:
            return False
        self._auth_token = token
        if self._sender is not None:
            self._sender.sign_with(token)
        if self._streams is not None:
            self._streams.sign_with(token)
        logger.info("sandbox carrier now uses the installation's auth token")
        return True

    async def _owned_call(self, request: web.Request, account_sid: str) -> SandboxCall:
        call = await self._store.get(request.match_info["sid"])
        if call is None or call.account_sid != account_sid:
            raise wire.not_found(request.path)
        return call

    async def _create_call(self, request: web.Request) -> web.StreamResponse:
        account_sid = await self._authenticate(request)
        fault = await self._create_fault()
        spec = wire.parse_call_request(await request.post())
        now = utcnow()
        # A real carrier answers a create promptly or not at all; a call stored long after the
        # client gave up would defeat its reconciliation, so a create that waited is dropped.
        not_after = now + timedelta(seconds=CREATE_DEADLINE_SECONDS)
        call = await self._store.insert_call(
            {
                "sid": "CA" + uuid.uuid4().hex,
                "account_sid": account_sid,
                "to_number": spec.to,
                "from_number": spec.from_,
                "url": spec.url,
                "status_callback": spec.status_callback,
                "status_callback_events": spec.status_callback_events,
                "machine_detection": spec.machine_detection,
                "async_amd": spec.async_amd,
                "async_amd_status_callback": spec.async_amd_status_callback,
                "timeout": spec.timeout,
                "time_limit": spec.time_limit,
                "status": "queued",
                "stage": Stage.CREATED,
                "answered_by": None,
                "duration": None,
                "sequence": 0,
                "created_at": now,
                "start_time": None,
                "answered_at": None,
                "end_time": None,
                "updated_at": now,
                "params": spec.params,
            },
            not_after=not_after,
        )
        logger.info(
            "sandbox call %s to %s queued (attempt %d, plan: %s)",
            call.sid,
            mask(call.to_number),
            call.attempt_number,
            planned_outcome(call.to_number, call.attempt_number).name,
        )
        response = web.json_response(wire.call_resource(call), status=201)
        if fault is CreateFault.CREATE_TIMEOUT:
            self._launch(call.sid)
            logger.info("sandbox fault: holding the answer for call %s", call.sid)
            # The client gives up first: the call exists but the client never learns its sid.
            await asyncio.sleep(self._faults.faults.hang_seconds)
            return response
        try:
            # The client holds the sid before the first callback can reach it, as with Twilio.
            await response.prepare(request)
            await response.write_eof()
        finally:
            self._launch(call.sid, call)
        return response

    async def _inbound(self, request: web.Request) -> web.Response:
        """``From`` (the caller) calls ``To`` (a number of the account), form or JSON."""
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError as exc:
                raise wire.TwilioError(400, 21200, "the body is not JSON") from exc
            fields = body if isinstance(body, dict) else {}
        else:
            fields = dict(await request.post())
        call = await self.place_inbound(str(fields.get("From", "")), str(fields.get("To", "")))
        return web.json_response(wire.call_resource(call), status=201)

    async def place_inbound(self, caller: str, called: str) -> SandboxCall:
        """A person at ``caller`` calls ``called``, one of the account's numbers."""
        caller_e164 = wire.e164(caller)
        if caller_e164 is None:
            raise wire.TwilioError(400, 21212, f"From {caller!r} is not a valid phone number")
        number = account.owned_number(called)
        if number is None:
            raise wire.TwilioError(404, 20404, f"{called!r} is not a number of this account")
        now = utcnow()
        call = await self._store.insert_call(
            {
                "sid": "CA" + uuid.uuid4().hex,
                "account_sid": self._account_sid,
                "to_number": number,
                "from_number": caller_e164,
                "url": self.voice_url_of(number),
                "status_callback": self._voice_status_callback,
                # A number's status callback reports the end of each call it receives.
                "status_callback_events": ["completed"],
                "machine_detection": None,
                "async_amd": False,
                "async_amd_status_callback": None,
                "timeout": wire.DEFAULT_TIMEOUT,
                "time_limit": wire.DEFAULT_TIME_LIMIT,
                "status": "ringing",
                "stage": Stage.CREATED,
                "answered_by": None,
                "duration": None,
                "sequence": 0,
                "created_at": now,
                "start_time": None,
                "answered_at": None,
                "end_time": None,
                "updated_at": now,
                "params": {wire.DIRECTION_PARAM: wire.INBOUND},
            }
        )
        logger.info("sandbox call %s from %s to %s received", call.sid, mask(caller_e164), number)
        self._launch(call.sid, call)
        return call

    async def _call_back_later(self, caller: str, called: str, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self.place_inbound(caller, called)
        except wire.TwilioError as error:
            logger.info("sandbox call back from %s not placed: %s", mask(caller), error.message)

    async def _create_fault(self) -> CreateFault:
        """Apply the injected create faults that refuse before anything is created."""
        delay = self._faults.create_delay()
        if delay:
            await asyncio.sleep(delay)
        fault = self._faults.create_fault()
        if fault is CreateFault.RATE_LIMIT:
            raise wire.TwilioError(429, 20429, "Too Many Requests")
        if fault is CreateFault.SERVER_ERROR:
            raise wire.TwilioError(500, 20500, "Internal Server Error")
        return fault

    async def _list_calls(self, request: web.Request) -> web.Response:
        account_sid = await self._authenticate(request)
        listing = wire.parse_list_request(request.query)
        after = None
        if listing.page_token and listing.page_token.startswith("PA"):
            after = await self._store.get(listing.page_token[2:])
        calls = await self._store.page(
            account_sid,
            listing.filters,
            limit=listing.page_size + 1,
            offset=listing.page * listing.page_size,
            after=after,
        )
        has_more = len(calls) > listing.page_size
        page = wire.list_page(account_sid, listing, calls[: listing.page_size], has_more)
        return web.json_response(page)

    async def _fetch_call(self, request: web.Request) -> web.Response:
        account_sid = await self._authenticate(request)
        call = await self._owned_call(request, account_sid)
        return web.json_response(wire.call_resource(call))

    async def _update_call(self, request: web.Request) -> web.Response:
        account_sid = await self._authenticate(request)
        form = await request.post()
        call = await self._owned_call(request, account_sid)
        if call.terminal:
            raise wire.TwilioError(400, 21220, "Call is not in-progress. Cannot redirect.")
        status = form.get("Status")
        twiml = form.get("Twiml")
        if status is None and twiml is not None:
            # New TwiML for a live call (a voicemail message, say): kept for inspection; one
            # that ends in <Hangup/> ends the call once played.
            self._twiml_updates.setdefault(call.sid, []).append(str(twiml))
            if "<Hangup" not in str(twiml):
                return web.json_response(wire.call_resource(call))
            status = "completed"
        if status is None:
            # Redirecting a live call to a new Url is accepted but not simulated.
            return web.json_response(wire.call_resource(call))
        if status not in ("canceled", "completed"):
            raise wire.TwilioError(400, 21200, "Status must be canceled or completed")
        live = self._launch(call.sid)
        if live is None:
            await self._hang_up(call, str(status))
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.shield(live.request_hangup(str(status))), HANGUP_WAIT_SECONDS
                )
        updated = await self._store.get(call.sid)
        return web.json_response(wire.call_resource(updated or call))

    async def _inspect_calls(self, request: web.Request) -> web.Response:
        calls = await self._store.all_calls(to=request.query.get("to") or None)
        return web.json_response(
            [
                wire.inspection_record(call, self._planned_name(call))
                | ({"said": self._said.get(call.sid, [])} if self._inbound_call(call) else {})
                for call in calls
            ]
        )

    @staticmethod
    def _inbound_call(call: SandboxCall) -> bool:
        return wire.direction(call) == wire.INBOUND

    def _planned_name(self, call: SandboxCall) -> str:
        if self._inbound_call(call):
            return "caller"
        return planned_outcome(call.to_number, call.attempt_number).name

    async def _inspect_twiml(self, request: web.Request) -> web.Response:
        """The TwiML documents a live call was updated with, oldest first (kept in memory)."""
        return web.json_response(self._twiml_updates.get(request.match_info["sid"], []))

    async def _inspect_sent(self, request: web.Request) -> web.Response:
        """Every TwiML request and callback sent, as sent (``?after=<seq>`` for the newer)."""
        try:
            after = int(request.query.get("after", "0"))
        except ValueError as exc:
            raise web.HTTPBadRequest(text='{"detail": "after must be an integer"}') from exc
        entries = self._sender.journal.entries(after) if self._sender is not None else []
        return web.json_response(entries)

    async def _inspect_media(self, request: web.Request) -> web.Response:
        stats = self._streams.stats.get(request.match_info["sid"]) if self._streams else None
        if stats is None:
            raise wire.not_found(request.path)
        return web.json_response(stats.to_json())

    async def _inspect_callbacks(self, request: web.Request) -> web.Response:
        callbacks = await self._store.callbacks(request.match_info["sid"])
        return web.json_response(
            [
                {
                    "event": cb.event,
                    "sequence_number": cb.sequence_number,
                    "url": cb.url,
                    "method": cb.method,
                    "params": cb.params,
                    "state": cb.state,
                    "attempts": cb.attempts,
                    "response_status": cb.response_status,
                    "created_at": wire.iso(cb.created_at),
                    "finished_at": wire.iso(cb.finished_at),
                }
                for cb in callbacks
            ]
        )

    # ------------------------------------------------------------------ one call

    async def _run_call(self, live: _LiveCall) -> None:
        courier = self._spawn(self._courier(live), f"sandbox-callbacks-{live.sid}")
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

    async def _simulate(self, live: _LiveCall) -> None:
        call = live.created or await self._store.get(live.sid)
        live.created = None
        if call is None:
            return
        inbound = self._inbound_call(call)
        outcome = planned_outcome(call.to_number, call.attempt_number)
        while call.stage != Stage.ENDED:
            if live.hangup.is_set():
                call = await self._hang_up(call, live.requested_status or "canceled")
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

    async def _advance_inbound(self, call: SandboxCall, live: _LiveCall) -> SandboxCall:
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
        if not call.url or call.url == wire.DEMO_VOICE_URL or self._sender is None:
            # Twilio's demo answers with a greeting of its own; nothing here to ask.
            return TwimlPlan(hangup=True, said=("Twilio demo greeting",)) if call.url else None
        reply = await self._sender.request(
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
        self, call: SandboxCall, outcome: SimulatedOutcome, live: _LiveCall
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
    async def _pause(live: _LiveCall, until: datetime) -> bool:
        """Wait until `until` or a hang-up request, whichever comes first; True on a hang-up."""
        remaining = (until - utcnow()).total_seconds()
        if remaining > 0 and not live.hangup.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(live.hangup.wait(), remaining)
        return live.hangup.is_set()

    async def _hang_up(self, call: SandboxCall, requested: str) -> SandboxCall:
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
        if self._streams is not None:
            # The callee hangs up: its media stream (if any) stops first.
            await self._streams.stop(call.sid)
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
        if not call.url or self._sender is None:
            return True
        # Synchronous AMD finishes before the TwiML request, which then carries the verdict.
        answered_by = None if call.async_amd else call.answered_by
        detection_ms = planned_outcome(call.to_number, call.attempt_number).amd_duration_ms
        reply = await self._sender.request(
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
            self._said.setdefault(call.sid, []).extend(plan.said)
        if live is None or self._streams is None:
            return
        if plan.stream is not None:
            self._streams.start(
                call.sid,
                plan.stream,
                callee,
                lambda: live.request_hangup("completed"),
                words,
            )
        elif plan.hangup or (plan.said and self._inbound_call(call)):
            # With its TwiML said and nothing left to do, Twilio ends the call.
            live.request_hangup("completed")

    async def _courier(self, live: _LiveCall) -> None:
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
                    if self._sender is None:
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
        if self._sender is None:
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
        state, attempts, status = await self._sender.deliver(callback)
        if fate.duplicate:
            await self._sender.deliver(callback)
        await self._store.finish_callback(
            callback.id, state=state, attempts=attempts, response_status=status
        )
