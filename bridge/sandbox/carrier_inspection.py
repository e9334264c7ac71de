"""The sandbox carrier's own routes, which are not Twilio's: its records of every call (with full
numbers, callbacks, media statistics, TwiML updates, and every request it sent, as sent), read by
the tests, the dashboard and a rehearsal; and ``POST /inbound``, the sandbox's way of having a
person call one of the account's numbers. All behind the inspection guard (`inspection`).
"""

from __future__ import annotations

from aiohttp import web

from bridge.sandbox import wire
from bridge.sandbox.call_simulation import CallSimulator, is_inbound
from bridge.sandbox.carrier_senders import Outgoing
from bridge.sandbox.inspection import InspectionGuard, guarded, journal_reply
from bridge.sandbox.number_table import planned_outcome
from bridge.sandbox.recent import Recent
from bridge.sandbox.store import CallStore, SandboxCall


def planned_name(call: SandboxCall) -> str:
    """Who the call meets, as the number table plans it (``caller`` for a received call)."""
    if is_inbound(call):
        return "caller"
    return planned_outcome(call.to_number, call.attempt_number).name


class CarrierInspection:
    def __init__(
        self,
        store: CallStore,
        simulator: CallSimulator,
        outgoing: Outgoing,
        twiml_updates: Recent[str, list[str]],
    ) -> None:
        self._store = store
        self._simulator = simulator
        self._outgoing = outgoing
        self._twiml_updates = twiml_updates

    def add_routes(self, app: web.Application, guard: InspectionGuard | None) -> None:
        """The routes, behind ``guard`` if any (full numbers, TwiML with dynamic variables)."""
        inspect = guarded(guard)
        app.router.add_get("/calls", inspect(self._inspect_calls))
        app.router.add_get("/calls/{sid}/callbacks", inspect(self._inspect_callbacks))
        app.router.add_get("/calls/{sid}/media", inspect(self._inspect_media))
        app.router.add_get("/calls/{sid}/twiml", inspect(self._inspect_twiml))
        app.router.add_get("/sent", inspect(self._inspect_sent))
        # Not Twilio's API: the sandbox's way of having a person call one of the numbers.
        app.router.add_post("/inbound", inspect(self._inbound))

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
        call = await self._simulator.place_inbound(
            str(fields.get("From", "")), str(fields.get("To", ""))
        )
        return web.json_response(wire.call_resource(call), status=201)

    async def _inspect_calls(self, request: web.Request) -> web.Response:
        calls = await self._store.all_calls(to=request.query.get("to") or None)
        said = self._simulator.said
        return web.json_response(
            [
                wire.inspection_record(call, planned_name(call))
                | ({"said": said.get(call.sid, [])} if is_inbound(call) else {})
                for call in calls
            ]
        )

    async def _inspect_twiml(self, request: web.Request) -> web.Response:
        """The TwiML documents a live call was updated with, oldest first (kept in memory)."""
        return web.json_response(self._twiml_updates.get(request.match_info["sid"], []))

    async def _inspect_sent(self, request: web.Request) -> web.Response:
        """Every TwiML request and callback sent, as sent (``?after=<seq>`` for the newer)."""
        sender = self._outgoing.sender
        return journal_reply(request, sender.journal if sender is not None else None)

    async def _inspect_media(self, request: web.Request) -> web.Response:
        streams = self._outgoing.streams
        stats = streams.stats.get(request.match_info["sid"]) if streams else None
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
