"""create_app(settings): routes, shared objects under AppKeys, resources in cleanup contexts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import timedelta

from aiohttp import web

from bridge import dashboard
from bridge.agents import setup as agents_setup
from bridge.api import calls as calls_api
from bridge.api import campaigns as campaign_api
from bridge.api import dnc as dnc_api
from bridge.api import lifecycle as lifecycle_api
from bridge.api import lists as lists_api
from bridge.api.auth import api_auth_middleware
from bridge.api.bodies import FORM_LIMIT_BYTES
from bridge.api.errors import error_middleware
from bridge.api.setup import setup as api_setup
from bridge.app_keys import (
    APPLIER,
    CARRIER,
    DIALER,
    DISPATCHER,
    ENGINE,
    EVENTS,
    READ_ENGINE,
    READ_SESSIONMAKER,
    SCHEDULER,
    SESSIONMAKER,
    SETTINGS,
)
from bridge.background import background_tasks
from bridge.migrate import upgrade_to_head
from bridge.ops import setup as ops
from bridge.ops.retention import Pruner
from bridge.sandbox.carrier import build_carrier
from bridge.sandbox.inspection import inspection_guard
from bridge.settings import Settings
from bridge.telephony.factory import setup as telephony_setup
from bridge.webhooks.applier import new_applier
from campaigns.clock import set_offset, utcnow
from campaigns.db import make_engine, make_read_engine, make_read_sessionmaker, make_sessionmaker
from campaigns.dispatcher import Dispatcher
from campaigns.events import AttemptEnded, AttemptNotPlaced, ContactsDue, EventBus
from campaigns.intake.staging import settle_abandoned
from campaigns.leases import exclusive
from campaigns.lifecycle import complete_finished, expire_ended, start_now
from campaigns.reconciliation import Reconciler
from campaigns.scheduler import Scheduler
from campaigns.single_calls import end_unconnected_registrations
from campaigns.verdicts import refresh_missing_verdicts

log = logging.getLogger(__name__)

# How long after a start the calls placed before it are asked about at each housekeeping pass.
RESTART_SWEEP_SECONDS = 30.0


def create_app(settings: Settings) -> web.Application:
    if settings.exposed_sandbox and settings.public_sandbox_secrets:
        raise ValueError(
            f"sandbox mode listening on {settings.host} would sign with the published sandbox "
            f"secrets ({', '.join(settings.public_sandbox_secrets)}): start it with "
            "`callbridge serve`, which uses the installation's own, or listen on 127.0.0.1"
        )
    # client_max_size bounds the bodies aiohttp reads for us (forms: Twilio callbacks, the
    # sandbox); every other body is read by bridge.api.bodies under its route's limit.
    app = web.Application(
        middlewares=[error_middleware, api_auth_middleware], client_max_size=FORM_LIMIT_BYTES
    )
    app[SETTINGS] = settings
    # A rehearsal's shifted clock (sandbox only): the whole process shares one clock.
    set_offset(settings.clock_offset_seconds if settings.sandbox else 0.0)
    app.add_routes(campaign_api.routes)
    app.add_routes(lifecycle_api.api.routes)
    app.add_routes(dnc_api.api.routes)
    app.add_routes(calls_api.api.routes)
    app.add_routes(lists_api.api.routes)
    app.router.add_get("/healthz", _healthz)
    # Creating an engine opens no connection; the cleanup context migrates and disposes it.
    engine = make_engine(settings.database_url, **settings.engine_options)
    app[ENGINE] = engine
    app[EVENTS] = EventBus()
    app[SESSIONMAKER] = make_sessionmaker(engine, app[EVENTS])
    app[READ_ENGINE] = make_read_engine(engine)
    app[READ_SESSIONMAKER] = make_read_sessionmaker(app[READ_ENGINE])
    app[APPLIER] = new_applier(app[SESSIONMAKER])
    ops.setup(app)
    app.cleanup_ctx.append(_database)
    api_setup(app)
    # With CALLBRIDGE_SANDBOX_URL the sandbox runs as a process of its own, shared by every node.
    if settings.sandbox and not settings.sandbox_url:
        carrier = build_carrier(engine, settings, inspection_guard=inspection_guard(app))
        app[CARRIER] = carrier
        app.add_subapp("/sandbox", carrier.app())
        app.cleanup_ctx.append(_sandbox)
    # The agents' client first: the dialers of calls ElevenLabs places are built on it.
    agents_setup(app, settings)
    telephony_setup(app)
    # After the dialer: closed before it, so a hang-up in flight can finish.
    app.cleanup_ctx.append(background_tasks)
    app.cleanup_ctx.append(_dispatching)
    dashboard.setup(app)
    return app


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _database(app: web.Application) -> AsyncIterator[None]:
    engine = app[ENGINE]
    if app[SETTINGS].migrate_on_start:
        await upgrade_to_head(engine)
    yield
    if app[READ_ENGINE].sync_engine.pool is not engine.sync_engine.pool:
        await app[READ_ENGINE].dispose()
    await engine.dispose()


async def _sandbox(app: web.Application) -> AsyncIterator[None]:
    carrier = app[CARRIER]
    # Calls left unfinished by a previous run call back this very process: they are resumed
    # once the service listens (`bridge.ops.serving.on_listening`), or their callbacks would
    # meet a closed port and be lost.
    await carrier.start(resume=False)
    yield
    await carrier.close()


async def _dispatching(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    sm = app[SESSIONMAKER]
    scheduler: Scheduler | None = None

    def next_due(at: object) -> None:
        if scheduler is not None:
            scheduler.wake_dispatcher_at(at)  # type: ignore[arg-type]

    dialer = app[DIALER]
    dispatcher = Dispatcher(
        sm,
        dialer,
        provider_timeout_seconds=settings.provider_timeout_seconds,
        batch_size=settings.dispatch_batch_size,
        on_next_due=next_due,
        window_margin_seconds=settings.window_margin_seconds,
    )
    loop = asyncio.get_running_loop()

    def wake_on(events: list[object]) -> None:
        # A freed slot or contacts due now: the dispatcher looks at once, not at its next timer.
        # (A commit may happen off the loop's thread.)
        if any(
            isinstance(event, AttemptEnded | AttemptNotPlaced | ContactsDue) for event in events
        ):
            loop.call_soon_threadsafe(dispatcher.wake)

    app[EVENTS].after_commit.append(wake_on)
    reconciler = Reconciler(
        sm,
        dialer,
        provider_timeout_seconds=settings.provider_timeout_seconds,
        started_at=utcnow(),
        on_call_ended=dispatcher.wake,
        report_grace=timedelta(seconds=settings.unconfirmed_grace_seconds),
    )
    # After a restart, callbacks sent while this node was down (or starting, not yet listening)
    # went nowhere: for a while every live call placed before the start (or just after it) is
    # asked about, not only the overdue ones.
    sweep_all_until = time.monotonic() + max(
        RESTART_SWEEP_SECONDS, 3 * settings.housekeeping_seconds
    )

    stale_slack = timedelta(seconds=settings.stale_call_slack_seconds)
    pruner = Pruner(app)

    async def housekeeping() -> None:
        # One node at a time: N nodes would otherwise ask the provider about every call N times.
        async with exclusive(app[ENGINE], "housekeeping") as ours:
            if not ours:
                return
            await reconciler.reconcile_expired_leases()
            if await expire_ended(sm):
                dispatcher.wake()
            await complete_finished(sm)
            await end_unconnected_registrations(sm)
            older = None if time.monotonic() < sweep_all_until else stale_slack
            await reconciler.refresh_live_calls(older_than=older)
            await refresh_missing_verdicts(sm, dialer, stale_slack)
            # Imports whose process died: discarded, or finished if they had been decided.
            await settle_abandoned(sm)
            # History older than the retention setting (every few minutes, not every pass).
            await pruner.maybe_prune()

    async def start_campaign(campaign_id: str) -> None:
        await start_now(sm, campaign_id)
        if scheduler is not None:
            await scheduler.schedule_recurring(campaign_id)

    scheduler = Scheduler(
        sm,
        start_campaign=start_campaign,
        wake_dispatcher=dispatcher.wake,
        housekeeping=housekeeping,
        housekeeping_seconds=settings.housekeeping_seconds,
    )
    app[DISPATCHER] = dispatcher
    app[SCHEDULER] = scheduler
    await scheduler.start()
    dispatcher.start()
    yield
    app[EVENTS].after_commit.remove(wake_on)
    await scheduler.drain()
    await dispatcher.stop(drain_seconds=settings.shutdown_grace_seconds)
