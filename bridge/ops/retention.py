"""Housekeeping's retention pass: history older than ``CALLBRIDGE_RETENTION_DAYS`` goes.

Housekeeping runs every few seconds; pruning is asked at most every ``PRUNE_EVERY_SECONDS``,
which is plenty for a limit counted in days, and keeps its reads off the hot path.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from bridge.app_keys import CARRIER, SESSIONMAKER, SETTINGS
from campaigns import retention
from campaigns.clock import utcnow

log = logging.getLogger(__name__)

PRUNE_EVERY_SECONDS = 600.0


class Pruner:
    def __init__(self, app: web.Application, every_seconds: float = PRUNE_EVERY_SECONDS) -> None:
        self._app = app
        self._every = every_seconds
        self._next = 0.0  # the first housekeeping pass prunes

    async def maybe_prune(self) -> dict[str, int] | None:
        """Prune if due; what was deleted, or None when not due or retention is off."""
        now = time.monotonic()
        if now < self._next:
            return None
        self._next = now + self._every
        return await prune_now(self._app)


async def prune_now(app: web.Application) -> dict[str, int] | None:
    before = retention.cutoff(utcnow(), app[SETTINGS].retention_days)
    if before is None:
        return None
    deleted = await retention.prune(app[SESSIONMAKER], before)
    carrier = app.get(CARRIER)
    if carrier is not None:
        # The sandbox's call log, when the sandbox runs inside this process.
        deleted["sandbox_calls"] = await carrier.prune(before)
    if any(deleted.values()):
        log.info("retention: deleted what was older than %s: %s", before.isoformat(), deleted)
    return deleted
