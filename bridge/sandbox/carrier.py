"""A local Twilio-compatible Calls API that simulates every call it is asked to place.

The real twilio SDK talks to it (point ``client.api.base_url`` at ``…/sandbox``), and it posts
signed status, TwiML and AMD requests back the way Twilio does, so the demo, the tests and
users' rehearsals exercise the production dialer and webhook code. How each call ends is given by
`bridge.sandbox.number_table`.

It also receives calls: ``POST /sandbox/inbound`` (or a call-back rule of the outcome table) has
a person call one of the account's numbers; the carrier asks that number's voice URL what to do,
signed, and plays the caller over a Media Stream or hears the `<Say>`, as Twilio would.

This module assembles the carrier from its parts, each with a job of its own:

- `carrier_rest`: Twilio's REST API (Calls, the Account and its numbers), with
  `carrier_auth` for its Basic auth;
- `carrier_inspection`: the sandbox's own routes (the records of every call, placing a received
  call), behind the inspection guard;
- `call_simulation`: each call's simulation, in stages recorded in the database
  (`store.Stage`), so a restarted service carries unfinished calls on from where they were;
- `courier`: a second task per call that delivers that call's callbacks from the outbox, in
  firing order, so a slow webhook delays neither the call's own timeline nor any other call;
- `outgoing`: the HTTP session, signed sender and media stream player they send with.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.fault_plan import Faults
from bridge.sandbox.call_simulation import CallSimulator
from bridge.sandbox.carrier_auth import AccountAuth, TokenSource
from bridge.sandbox.carrier_inspection import CarrierInspection
from bridge.sandbox.carrier_rest import CallsApi, twilio_errors
from bridge.sandbox.carrier_senders import Outgoing
from bridge.sandbox.courier import Courier
from bridge.sandbox.delivery import JOURNAL_LIMIT
from bridge.sandbox.faults import FaultInjector
from bridge.sandbox.inspection import InspectionGuard
from bridge.sandbox.recent import DEFAULT_RECORDS
from bridge.sandbox.store import CallStore, SandboxCall, ensure_schema
from bridge.settings import Settings


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
        self._store = CallStore(engine)
        self._inspection_guard = inspection_guard
        # Kept for inspection after the call: the newest ``records_limit`` calls' only.
        self._records_limit = records_limit
        injector = FaultInjector(faults or Faults())
        self._outgoing = Outgoing(
            account_sid=account_sid,
            retry_delay=callback_retry_delay,
            journal_limit=journal_limit,
            records_limit=records_limit,
        )
        self._auth = AccountAuth(
            account_sid=account_sid,
            auth_token=auth_token,
            installation_token=installation_token,
            on_new_token=self._outgoing.sign_with,
        )
        self._simulator = CallSimulator(
            self._store,
            self._outgoing,
            Courier(self._store, injector, self._outgoing),
            account_sid=account_sid,
            ring_seconds=ring_seconds,
            talk_seconds=talk_seconds,
            voice_url=voice_url,
            voice_status_callback=voice_status_callback,
            records_limit=records_limit,
        )
        self._calls_api = CallsApi(
            self._store, self._auth, injector, self._simulator, records_limit=records_limit
        )
        self._inspection = CarrierInspection(
            self._store, self._simulator, self._outgoing, self._calls_api.twiml_updates
        )

    @property
    def store(self) -> CallStore:
        return self._store

    async def prune(self, before: datetime) -> int:
        """Forget ended calls (and their callbacks) created before ``before``: retention."""
        return await self._store.prune(before)

    def memory(self) -> dict[str, tuple[int, int | None]]:
        """What this carrier holds in memory: structure -> (entries, limit or None)."""
        return {
            "sandbox_live_calls": (self._simulator.live_calls, None),
            "sandbox_tasks": (self._simulator.tasks, None),
            "sandbox_twiml_updates": (len(self._calls_api.twiml_updates), self._records_limit),
            "sandbox_inbound_said": (len(self._simulator.said), self._records_limit),
            "sandbox_store_queue": (self._store.queued, None),
            **self._outgoing.memory(),
        }

    # ------------------------------------------------------------------ lifecycle

    def app(self) -> web.Application:
        """The sub-application; mount it with ``app.add_subapp("/sandbox", carrier.app())``."""
        app = web.Application(middlewares=[twilio_errors])
        self._calls_api.add_routes(app)
        self._inspection.add_routes(app, self._inspection_guard)
        return app

    def voice_url_of(self, number: str) -> str | None:
        """The voice URL of one of the account's numbers."""
        return self._simulator.voice_url_of(number)

    async def place_inbound(self, caller: str, called: str) -> SandboxCall:
        """A person at ``caller`` calls ``called``, one of the account's numbers."""
        return await self._simulator.place_inbound(caller, called)

    async def start(self, *, resume: bool = True) -> None:
        """Create the tables if needed and (unless ``resume`` is False, leaving it to a later
        `resume`) carry on every call a previous run left unfinished."""
        if self._simulator.running:
            return
        await ensure_schema(self._engine)
        if self._auth.follows_installation:
            await self._auth.refresh_token(force=True)
        self._outgoing.open(self._auth.auth_token)
        self._simulator.running = True
        if resume:
            await self.resume()

    async def resume(self) -> None:
        """Carry on every call a previous run left unfinished."""
        await self._simulator.resume()

    async def close(self) -> None:
        """Stop simulating (calls stay in the log, to be resumed by the next start)."""
        await self._simulator.stop()
        await self._store.close()
        await self._outgoing.close()


def build_carrier(
    engine: AsyncEngine,
    settings: Settings,
    *,
    inspection_guard: InspectionGuard | None,
    installation_token: TokenSource | None = None,
) -> SandboxCarrier:
    """The sandbox carrier as ``settings`` configure it, in a service node or on its own."""
    return SandboxCarrier(
        engine,
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token,
        ring_seconds=settings.sandbox_ring_seconds,
        talk_seconds=settings.sandbox_talk_seconds,
        faults=settings.sandbox_faults,
        installation_token=installation_token,
        inspection_guard=inspection_guard,
        # The nodes' public URL: where the sandbox's numbers send the calls they receive.
        voice_url=settings.inbound_url,
        voice_status_callback=f"{settings.base_url}/webhooks/twilio/status",
        records_limit=settings.sandbox_memory_records,
        journal_limit=settings.sandbox_journal_entries,
    )
