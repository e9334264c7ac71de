"""The sandbox carrier's Twilio-compatible REST API: Calls (create, fetch, list, update), with
the Account and its IncomingPhoneNumbers (`account`), as the real twilio SDK calls them.

Requests are parsed and answered in Twilio's wire format (`wire`); a created call is handed to
the `call_simulation.CallSimulator`, and so is a hang-up. Injected create faults (`faults`)
refuse, slow down or hold the answer to a create, as a real carrier under load does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

from aiohttp import web

from bridge.sandbox import account, wire
from bridge.sandbox.call_simulation import CallSimulator
from bridge.sandbox.carrier_auth import AccountAuth
from bridge.sandbox.faults import CreateFault, FaultInjector
from bridge.sandbox.number_table import planned_outcome
from bridge.sandbox.recent import Recent
from bridge.sandbox.store import CallStore, CreateAbandoned, SandboxCall, new_call
from campaigns.clock import utcnow
from campaigns.phones import mask

logger = logging.getLogger(__name__)

# A create not stored this long after it was taken up is abandoned (503, nothing created).
CREATE_DEADLINE_SECONDS = 4.0
# How long a hang-up request waits for the call's task to act on it before answering anyway.
HANGUP_WAIT_SECONDS = 5.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def twilio_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answers a `wire.TwilioError` (and an abandoned create) as Twilio's error document."""
    try:
        return await handler(request)
    except wire.TwilioError as error:
        return error.response()
    except CreateAbandoned:
        return wire.TwilioError(503, 20503, "Service Unavailable").response()


class CallsApi:
    def __init__(
        self,
        store: CallStore,
        auth: AccountAuth,
        faults: FaultInjector,
        simulator: CallSimulator,
        *,
        records_limit: int,
    ) -> None:
        self._store = store
        self._auth = auth
        self._faults = faults
        self._simulator = simulator
        # The TwiML documents each live call was updated with: the newest calls' only.
        self.twiml_updates: Recent[str, list[str]] = Recent(records_limit)

    def add_routes(self, app: web.Application) -> None:
        """Twilio's routes; ``app`` should answer errors with `twilio_errors`."""
        calls = f"/{wire.API_VERSION}/Accounts/{{account_sid}}/Calls"
        app.router.add_post(f"{calls}.json", self._create_call)
        app.router.add_get(f"{calls}.json", self._list_calls)
        app.router.add_get(f"{calls}/{{sid}}.json", self._fetch_call)
        app.router.add_post(f"{calls}/{{sid}}.json", self._update_call)
        account.add_routes(app, self._auth.authenticate, self._simulator.voice_url_of)

    async def _owned_call(self, request: web.Request, account_sid: str) -> SandboxCall:
        call = await self._store.get(request.match_info["sid"])
        if call is None or call.account_sid != account_sid:
            raise wire.not_found(request.path)
        return call

    async def _create_call(self, request: web.Request) -> web.StreamResponse:
        # A call is dated when its request arrives, as the carrier's own per-second count sees it.
        now = utcnow()
        account_sid = await self._auth.authenticate(request)
        fault = await self._create_fault()
        spec = wire.parse_call_request(await request.post())
        # A real carrier answers a create promptly or not at all; a call stored long after the
        # client gave up would defeat its reconciliation, so a create that waited is dropped.
        not_after = now + timedelta(seconds=CREATE_DEADLINE_SECONDS)
        call = await self._store.insert_call(
            new_call("CA" + uuid.uuid4().hex, account_sid, spec, "queued", now),
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
            self._simulator.launch(call.sid)
            logger.info("sandbox fault: holding the answer for call %s", call.sid)
            # The client gives up first: the call exists but the client never learns its sid.
            await asyncio.sleep(self._faults.faults.hang_seconds)
            return response
        try:
            # The client holds the sid before the first callback can reach it, as with Twilio.
            await response.prepare(request)
            await response.write_eof()
        finally:
            self._simulator.launch(call.sid, call)
        return response

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
        account_sid = await self._auth.authenticate(request)
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
        account_sid = await self._auth.authenticate(request)
        call = await self._owned_call(request, account_sid)
        return web.json_response(wire.call_resource(call))

    async def _update_call(self, request: web.Request) -> web.Response:
        account_sid = await self._auth.authenticate(request)
        form = await request.post()
        call = await self._owned_call(request, account_sid)
        if call.terminal:
            raise wire.TwilioError(400, 21220, "Call is not in-progress. Cannot redirect.")
        status = form.get("Status")
        twiml = form.get("Twiml")
        if status is None and twiml is not None:
            # New TwiML for a live call (a voicemail message, say): kept for inspection; one
            # that ends in <Hangup/> ends the call once played.
            self.twiml_updates.setdefault(call.sid, []).append(str(twiml))
            if "<Hangup" not in str(twiml):
                return web.json_response(wire.call_resource(call))
            status = "completed"
        if status is None:
            # Redirecting a live call to a new Url is accepted but not simulated.
            return web.json_response(wire.call_resource(call))
        if status not in ("canceled", "completed"):
            raise wire.TwilioError(400, 21200, "Status must be canceled or completed")
        live = self._simulator.launch(call.sid)
        if live is None:
            await self._simulator.hang_up(call, str(status))
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.shield(live.request_hangup(str(status))), HANGUP_WAIT_SECONDS
                )
        updated = await self._store.get(call.sid)
        return web.json_response(wire.call_resource(updated or call))
