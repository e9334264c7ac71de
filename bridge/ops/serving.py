"""Running the service until SIGTERM, then leaving gracefully.

On SIGTERM (or SIGINT) the node stops claiming contacts and reports itself not ready, keeps serving
webhooks while the calls it placed finish (up to ``shutdown_grace_seconds``), and only then
closes. Whatever is still live at the deadline is not lost: the next node to run housekeeping
asks the provider about it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

from aiohttp import web
from sqlalchemy import select

from bridge.app_keys import CARRIER, DISPATCHER, OPS_STATE, PLACED_CALLS, SESSIONMAKER, SETTINGS
from bridge.ops.logs import RedactingAccessLogger
from campaigns.models import Attempt, AttemptStatus

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2


async def serve(app: web.Application, host: str, port: int) -> None:
    runner = web.AppRunner(app, handle_signals=False, access_log_class=RedactingAccessLogger)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        await on_listening(app)
        # Everything loaded at start-up (modules, phone metadata, the app) lives as long as the
        # process; moved out of the collector's view, a full collection no longer walks it and
        # stalls every live call's audio for a tenth of a second or more.
        gc.collect()
        gc.freeze()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down: no new calls; waiting for live calls to finish")
        await drain(app)
    finally:
        await runner.cleanup()
    log.info("stopped")


async def on_listening(app: web.Application) -> None:
    """What needs the service to be reachable at its own address: call once it listens."""
    if CARRIER in app:
        await app[CARRIER].resume()


async def drain(app: web.Application) -> None:
    """Stop claiming, then wait (bounded) until this node's calls have ended."""
    grace = app[SETTINGS].shutdown_grace_seconds
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    app[OPS_STATE].draining = True
    dispatcher = app.get(DISPATCHER)
    if dispatcher is None:
        return
    # Dials already committed go out (they are promised attempts); no new ones are claimed.
    await dispatcher.stop(drain_seconds=grace)
    placed = app[PLACED_CALLS]
    while True:
        live = await _still_live(app, placed)
        if not live:
            log.info("every call this node placed has ended")
            return
        if loop.time() >= deadline:
            log.warning(
                "%d call(s) still live after %.0f s; housekeeping will settle them", live, grace
            )
            return
        await asyncio.sleep(POLL_SECONDS)


async def _still_live(app: web.Application, placed: set[str]) -> int:
    if not placed:
        return 0
    async with app[SESSIONMAKER]() as session:
        live = set(
            await session.scalars(
                select(Attempt.id).where(
                    Attempt.id.in_(list(placed)), Attempt.status.in_(AttemptStatus.LIVE)
                )
            )
        )
    placed.intersection_update(live)
    return len(live)
