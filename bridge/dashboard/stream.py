"""The live stream behind the dashboard: Server-Sent Events fed by domain events.

Each connection sends a full document of what its page shows (the campaign list, or one campaign
with its live calls and calls per minute) as soon as it opens, and again whenever it changes. A
page that reconnects, to this node or another, therefore starts from a complete, current state:
nothing depends on events it may have missed while away.

Changes are noticed two ways. Domain events committed on this node (an attempt ended, a contact
finished, a campaign completed) wake the connections that show that campaign at once. A slower
refresh catches what produces no domain event here: a dial starting, a pause from another node.
A document is only sent when it differs from the last one sent on that connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from bridge.api.errors import error_response
from bridge.app_keys import DASHBOARD_HUB, EVENTS, READ_SESSIONMAKER
from bridge.dashboard import queries
from bridge.dashboard.session import COOKIE, STREAM_PATH, Tickets

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

# How often a connection re-reads its document without being woken by an event.
REFRESH_SECONDS = 3.0
# Events arrive in bursts (an attempt ends, its contact finishes): gather them before reading.
COALESCE_SECONDS = 0.25
# A comment line this often keeps proxies from closing an idle stream.
HEARTBEAT_SECONDS = 15.0
RECONNECT_MILLISECONDS = 2000


class Subscriber:
    def __init__(self, campaign_id: str | None) -> None:
        self.campaign_id = campaign_id
        self.woken = asyncio.Event()

    def notify(self, campaign_ids: set[str]) -> None:
        if self.campaign_id is None or self.campaign_id in campaign_ids:
            self.woken.set()


class StreamHub:
    """Fans this node's committed domain events out to the open streams."""

    def __init__(self, tickets: Tickets) -> None:
        self.tickets = tickets
        self.closing = False
        self._subscribers: set[Subscriber] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the streams run on: events committed elsewhere are handed to it."""
        self._loop = loop

    def subscribe(self, campaign_id: str | None) -> Subscriber:
        subscriber = Subscriber(campaign_id)
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    def on_commit(self, events: list[Any]) -> None:
        """after_commit listener: may run wherever the session committed, so hop to our loop."""
        campaign_ids = {e.campaign_id for e in events if getattr(e, "campaign_id", None)}
        if campaign_ids and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._notify, campaign_ids)

    def _notify(self, campaign_ids: set[str]) -> None:
        for subscriber in list(self._subscribers):
            subscriber.notify(campaign_ids)

    def close(self) -> None:
        self.closing = True
        for subscriber in list(self._subscribers):
            subscriber.woken.set()

    @property
    def connections(self) -> int:
        return len(self._subscribers)


async def hub_context(app: web.Application) -> AsyncIterator[None]:
    hub = app[DASHBOARD_HUB]
    hub.bind(asyncio.get_running_loop())
    app[EVENTS].after_commit.append(hub.on_commit)
    yield
    hub.close()


async def on_shutdown(app: web.Application) -> None:
    # Open streams would otherwise hold a graceful shutdown until its timeout.
    app[DASHBOARD_HUB].close()


async def _documents(request: web.Request, campaign_id: str | None) -> dict[str, Any]:
    async with request.app[READ_SESSIONMAKER]() as session:
        if campaign_id is None:
            return {"campaigns": await queries.campaign_summaries(session)}
        campaign = await session.get(queries.Campaign, campaign_id)
        if campaign is None:
            return {"missing": {"campaign_id": campaign_id}}
        return {"campaign": await queries.campaign_view(session, campaign)}


def _message(event: str, data: str, event_id: int) -> bytes:
    return f"id: {event_id}\nevent: {event}\ndata: {data}\n\n".encode()


@routes.get(STREAM_PATH)
async def stream(request: web.Request) -> web.StreamResponse:
    hub = request.app[DASHBOARD_HUB]
    expires = hub.tickets.expiry(request.cookies.get(COOKIE))
    if expires is None:
        return error_response(
            401, "unauthorized", "no valid stream ticket: POST /api/v1/dashboard/session first"
        )
    campaign_id = request.query.get("campaign") or None
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            # Reverse proxies must pass events on as they come, not buffer them.
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    subscriber = hub.subscribe(campaign_id)
    sent: dict[str, str] = {}
    event_id = 0
    try:
        await response.write(f"retry: {RECONNECT_MILLISECONDS}\n\n".encode())
        last_write = time.monotonic()
        while not hub.closing:
            subscriber.woken.clear()
            for event, document in (await _documents(request, campaign_id)).items():
                data = json.dumps(document, separators=(",", ":"))
                if sent.get(event) != data:
                    sent[event] = data
                    event_id += 1
                    await response.write(_message(event, data, event_id))
                    last_write = time.monotonic()
            if time.monotonic() - last_write >= HEARTBEAT_SECONDS:
                await response.write(b": keep-alive\n\n")
                last_write = time.monotonic()
            # The stream ends with its ticket; the page renews the ticket and reconnects.
            left = expires - time.time()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(subscriber.woken.wait(), min(REFRESH_SECONDS, left))
                await asyncio.sleep(COALESCE_SECONDS)
    except ConnectionError:
        pass  # the page went away
    except SQLAlchemyError:
        # The page reconnects and starts over from a full document.
        log.warning("dashboard stream stopped: database error", exc_info=True)
    finally:
        hub.unsubscribe(subscriber)
    return response
