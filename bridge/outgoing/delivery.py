"""Sends the outbox's webhooks: a loop per node, woken when events commit and polled for retries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridge.outgoing.guard import GuardedClient
from bridge.outgoing.signing import HEADER, sign
from bridge.settings import Settings
from campaigns.outbox import Backoff, Claimed, claim_due, record_result

log = logging.getLogger(__name__)

BATCH = 50


class WebhookDeliverer:
    def __init__(
        self, sm: async_sessionmaker[AsyncSession], settings: Settings, http: GuardedClient
    ) -> None:
        self._sm = sm
        self._poll = settings.webhook_poll_seconds
        self._timeout = settings.webhook_timeout_seconds
        self._backoff = Backoff(
            base_seconds=settings.webhook_retry_base_seconds,
            max_seconds=settings.webhook_retry_max_seconds,
            window=timedelta(hours=settings.webhook_retry_window_hours),
        )
        # Long enough for one send to finish; after it another node may send the row again.
        self._lease = timedelta(seconds=self._timeout + 30)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Opened and closed by its owner (bridge/api/setup.py), shared with registration.
        self._http = http

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook-delivery")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def wake(self, _events: object = None) -> None:
        """An ``after_commit`` listener: new rows may be in the outbox."""
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._poll)
            self._wakeup.clear()
            try:
                while await self.deliver_due() == BATCH:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                # The next poll tries again; a database hiccup must not stop deliveries for good.
                log.exception("webhook delivery pass failed")

    async def deliver_due(self) -> int:
        claimed = await claim_due(self._sm, limit=BATCH, lease=self._lease)
        if claimed:
            await asyncio.gather(*(self._send(c) for c in claimed))
        return len(claimed)

    async def _send(self, claimed: Claimed) -> None:
        body = json.dumps(claimed.payload, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            HEADER: sign(claimed.secret, body),
            "Callbridge-Event-Id": claimed.event_id,
            "Callbridge-Event-Type": claimed.event_type,
        }
        started = time.monotonic()
        # The guarded client checks the target again here: a stored URL is not trusted.
        answer = await self._http.post(claimed.url, body, headers)
        duration_ms = int((time.monotonic() - started) * 1000)
        outcome = await record_result(
            self._sm,
            claimed,
            status_code=answer.status,
            error=answer.error,
            duration_ms=duration_ms,
            backoff=self._backoff,
            # A refused target stays refused: retrying it for a day only knocks on the same door.
            retry=not answer.refused,
        )
        if outcome != "delivered":
            log.info(
                "webhook %s to subscription %s: %s (%s)",
                claimed.event_id,
                claimed.subscription_id,
                answer.error,
                outcome,
            )
