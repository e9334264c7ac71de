"""Typed keys for the objects the application shares between handlers."""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractResolver
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from twilio.request_validator import RequestValidator

from bridge.settings import Settings
from campaigns.dispatcher import Dispatcher
from campaigns.events import EventBus
from campaigns.scheduler import Scheduler

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONMAKER = web.AppKey("sessionmaker", async_sessionmaker[AsyncSession])
# Sessions that only read (campaigns.db.make_read_engine): on SQLite, beside the writer.
READ_ENGINE = web.AppKey("read_engine", AsyncEngine)
READ_SESSIONMAKER = web.AppKey("read_sessionmaker", async_sessionmaker[AsyncSession])
# Domain events of SESSIONMAKER's sessions: add listeners before the app starts.
EVENTS = web.AppKey("events", EventBus)
# The one dialer chain (bridge/telephony/factory.py): metered, routed by agent connection.
DIALER = web.AppKey("dialer", "MeteredDialer")
# The agent connections the telephony packages registered, by name.
CONNECTIONS = web.AppKey("connections", dict)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
# Provider events are applied through it, in groups (bridge/webhooks/applier.py).
APPLIER = web.AppKey("applier", "EventApplier")
SCHEDULER = web.AppKey("scheduler", Scheduler)
TWILIO_VALIDATOR = web.AppKey("twilio_validator", RequestValidator)
CARRIER = web.AppKey("carrier", "SandboxCarrier")
# Operations: metrics registry, draining state, attempts this process handed to the provider.
METRICS = web.AppKey("metrics", "Metrics")
OPS_STATE = web.AppKey("ops_state", "OpsState")
PLACED_CALLS = web.AppKey("placed_calls", set)
# Agents: the ElevenLabs client, conversations opened at TwiML time, the sandbox agent.
ELEVENLABS = web.AppKey("elevenlabs", "ElevenLabsClient")
AGENT_CONNECTOR = web.AppKey("agent_connector", "AgentConnector")
MEDIA_TOKEN_SECRET = web.AppKey("media_token_secret", bytes)
SANDBOX_AGENT = web.AppKey("sandbox_agent", "SandboxAgent")
DASHBOARD_HUB = web.AppKey("dashboard_hub", "StreamHub")
# Per-key token buckets of the API (bridge/api/ratelimit.py).
RATE_LIMITER = web.AppKey("rate_limiter", "RateLimiter")
# Failed authentications per client address (bridge/api/auth_throttle.py).
AUTH_THROTTLE = web.AppKey("auth_throttle", "FailedAuthThrottle")
# Sends the outgoing webhooks of the outbox (bridge/outgoing/delivery.py).
WEBHOOK_DELIVERER = web.AppKey("webhook_deliverer", "WebhookDeliverer")
# Name resolution of the guarded outgoing client (bridge/outgoing/guard.py); the system's when
# unset.
OUTGOING_RESOLVER = web.AppKey("outgoing_resolver", AbstractResolver)
# The one client for requests to URLs users gave (bridge/outgoing/guard.py).
OUTGOING = web.AppKey("outgoing", "GuardedClient")
