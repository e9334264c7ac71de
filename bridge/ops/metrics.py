"""Prometheus metrics at /metrics, one registry per application.

Counters and histograms move as this node works; the gauges that describe the shared database
(live calls, dispatch lag, outbox backlog, open attention items) are read from it at scrape time,
so every node reports the same figures for them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import event as sql_event
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bridge.app_keys import METRICS, SESSIONMAKER
from campaigns.api_tables import DeliveryStatus, WebhookDelivery
from campaigns.clock import utcnow
from campaigns.dialing import (
    DialAmbiguous,
    Dialer,
    DialRefused,
    DialRequest,
    ProviderCall,
    lists_calls,
)
from campaigns.events import AttemptEnded
from campaigns.models import (
    Attempt,
    AttemptStatus,
    AttentionItem,
    Campaign,
    CampaignStatus,
    Contact,
    ContactState,
)

routes = web.RouteTableDef()

WEBHOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.calls_placed = Counter(
            "callbridge_calls_placed",
            "Calls the provider accepted (a call id came back)",
            registry=r,
        )
        self.attempts_ended = Counter(
            "callbridge_attempts_ended",
            "Attempts this node saw end, by outcome (answered, voicemail, busy, ...)",
            ["outcome"],
            registry=r,
        )
        self.provider_errors = Counter(
            "callbridge_provider_errors",
            "Creates the provider refused, by error code ('ambiguous': no clear answer)",
            ["code"],
            registry=r,
        )
        self.webhook_seconds = Histogram(
            "callbridge_webhook_seconds",
            "Time taken to answer provider webhooks",
            ["route"],
            buckets=WEBHOOK_BUCKETS,
            registry=r,
        )
        self.live_calls = Gauge(
            "callbridge_live_calls", "Attempts live now, across every node", registry=r
        )
        self.dispatch_lag = Gauge(
            "callbridge_dispatch_lag_seconds",
            "How long the longest-waiting due contact of a running campaign has been due",
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "callbridge_outbox_backlog", "Outgoing webhook deliveries not yet made", registry=r
        )
        self.db_statements = Counter(
            "callbridge_db_statements",
            "SQL statements this node sent to the database (BEGIN included)",
            registry=r,
        )
        self.db_transactions = Counter(
            "callbridge_db_transactions",
            "Database transactions this node ended, by how (commit, rollback)",
            ["end"],
            registry=r,
        )
        self.attention_open = Gauge(
            "callbridge_attention_items_open",
            "Problems an operator has to fix (e.g. campaigns paused by the circuit breaker)",
            registry=r,
        )

        # One series per structure (a handful), never one per call or per number.
        self.memory_entries = Gauge(
            "callbridge_memory_entries",
            "Entries this process holds in an in-memory structure (live calls, caches, the "
            "sandbox's inspection records and journals)",
            ["structure"],
            registry=r,
        )
        self.memory_limit = Gauge(
            "callbridge_memory_limit",
            "The configured bound of a bounded structure in callbridge_memory_entries",
            ["structure"],
            registry=r,
        )
        self._memory_sources: list[Callable[[], dict[str, tuple[int, int | None]]]] = []

    def watch(self, source: Callable[[], dict[str, tuple[int, int | None]]]) -> None:
        """Report the sizes ``source`` gives (structure -> entries, bound) at every scrape."""
        self._memory_sources.append(source)

    def refresh_memory(self) -> None:
        for source in self._memory_sources:
            for structure, (entries, bound) in source().items():
                self.memory_entries.labels(structure=structure).set(entries)
                if bound is not None:
                    self.memory_limit.labels(structure=structure).set(bound)

    def count_statements(self, engine: AsyncEngine) -> None:
        """Count the engine's statements and transactions: what a call costs the database."""
        statements = self.db_statements
        commits = self.db_transactions.labels(end="commit")
        rollbacks = self.db_transactions.labels(end="rollback")
        sync = engine.sync_engine
        sql_event.listen(sync, "before_cursor_execute", lambda *_: statements.inc())
        sql_event.listen(sync, "commit", lambda _: commits.inc())
        sql_event.listen(sync, "rollback", lambda _: rollbacks.inc())

    def on_commit(self, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, AttemptEnded):
                self.attempts_ended.labels(outcome=event.outcome or event.status).inc()

    async def refresh(self, sm: async_sessionmaker[AsyncSession], now: datetime) -> None:
        async with sm() as session:
            live = await session.scalar(
                select(func.count())
                .select_from(Attempt)
                .where(Attempt.status.in_(AttemptStatus.LIVE))
            )
            oldest_due = await session.scalar(
                select(func.min(Contact.next_attempt_at))
                .join(Campaign, Campaign.id == Contact.campaign_id)
                .where(
                    Campaign.status == CampaignStatus.RUNNING,
                    Contact.state == ContactState.PENDING,
                    Contact.next_attempt_at <= now,
                )
            )
            attention = await session.scalar(
                select(func.count())
                .select_from(AttentionItem)
                .join(Campaign, Campaign.id == AttentionItem.campaign_id)
                .where(
                    AttentionItem.resolved_at.is_(None),
                    Campaign.status == CampaignStatus.PAUSED,
                )
            )
            backlog = await session.scalar(
                select(func.count())
                .select_from(WebhookDelivery)
                .where(WebhookDelivery.status == DeliveryStatus.PENDING)
            )
        self.live_calls.set(live or 0)
        lag = (now - oldest_due).total_seconds() if oldest_due is not None else 0.0
        self.dispatch_lag.set(max(0.0, lag))
        self.attention_open.set(attention or 0)
        self.outbox_backlog.set(backlog or 0)


class MeteredDialer:
    """A Dialer that counts what the provider answers, and remembers what this node placed."""

    def __init__(self, inner: Dialer, metrics: Metrics, placed: set[str]) -> None:
        self._inner = inner
        self._metrics = metrics
        # Attempts this process handed to the provider: graceful shutdown waits for them.
        self.placed = placed

    async def place_call(self, request: DialRequest) -> str:
        try:
            call_id = await self._inner.place_call(request)
        except DialRefused as refusal:
            self._metrics.provider_errors.labels(code=refusal.code or "unknown").inc()
            raise
        except DialAmbiguous:
            self._metrics.provider_errors.labels(code="ambiguous").inc()
            self.placed.add(request.attempt_id)
            raise
        self._metrics.calls_placed.inc()
        self.placed.add(request.attempt_id)
        return call_id

    def provider_of(self, agent_connection: str) -> str:
        return self._inner.provider_of(agent_connection)

    def can_list_calls(self, agent_connection: str) -> bool:
        return lists_calls(self._inner, agent_connection)

    async def find_calls(self, to: str, since: datetime) -> list[ProviderCall]:
        return await self._inner.find_calls(to, since)

    async def fetch_call(self, call_id: str) -> ProviderCall | None:
        return await self._inner.fetch_call(call_id)

    async def hang_up(self, call_id: str) -> None:
        await self._inner.hang_up(call_id)

    async def leave_message(self, call_id: str, message: str) -> None:
        """Voicemail: say ``message`` on the live call, then hang up (where its provider can)."""
        leave = getattr(self._inner, "leave_message", None)
        if leave is None:
            raise NotImplementedError("this dialer cannot leave a message")
        await leave(call_id, message)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def webhook_timing(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/webhooks/"):
        return await handler(request)
    started = time.perf_counter()
    try:
        return await handler(request)
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        request.app[METRICS].webhook_seconds.labels(route=route).observe(
            time.perf_counter() - started
        )


@routes.get("/metrics")
async def metrics_endpoint(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    await metrics.refresh(request.app[SESSIONMAKER], utcnow())
    metrics.refresh_memory()
    body = generate_latest(metrics.registry)
    response = web.Response(body=body)
    # aiohttp refuses a charset inside content_type; set the header as Prometheus spells it.
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
