"""Wires the operations side into the application: readiness, metrics, circuit breaker."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bridge.app_keys import ENGINE, EVENTS, METRICS, OPS_STATE, PLACED_CALLS
from bridge.ops import attention, health, memory, metrics
from bridge.ops.health import OpsState
from bridge.ops.metrics import MeteredDialer, Metrics
from bridge.telephony.twilio.remedies import REMEDIES
from campaigns import breaker
from campaigns.dialing import Dialer
from campaigns.events import AttemptEnded, AttemptNotPlaced


def setup(app: web.Application) -> None:
    app[METRICS] = Metrics()
    app[METRICS].count_statements(app[ENGINE])
    app[OPS_STATE] = OpsState()
    placed: set[str] = set()
    app[PLACED_CALLS] = placed
    app.add_routes(health.routes)
    app.add_routes(metrics.routes)
    app.add_routes(attention.api.routes)
    app.middlewares.append(metrics.webhook_timing)
    events = app[EVENTS]
    events.after_commit.append(app[METRICS].on_commit)

    def forget_ended(committed: list[Any]) -> None:
        # An ambiguous create is remembered as placed; reconciliation may find it never was.
        for event in committed:
            if isinstance(event, AttemptEnded | AttemptNotPlaced):
                placed.discard(event.attempt_id)

    events.after_commit.append(forget_ended)
    # The carrier is Twilio: its how-to-fix texts go with the breaker's diagnoses.
    breaker.install(events, REMEDIES)
    # Read at scrape time, so structures added after this (sandbox, agents) are seen too.
    app[METRICS].watch(memory.watcher(app))


def metered_dialer(app: web.Application, dialer: Dialer) -> MeteredDialer:
    """``dialer``, counted, with the calls this node placed remembered (for a graceful stop)."""
    return MeteredDialer(dialer, app[METRICS], app[PLACED_CALLS])
