"""What this process holds in memory per call, per number or per request, and its bounds.

A service that runs for weeks must hold no more after a million calls than after a thousand:
every in-memory structure that gains an entry when something happens either loses it when that
thing ends (live calls, pending conversations, scheduled jobs) or keeps only the newest entries up
to a configured number (the sandbox's inspection records and journals, bounded caches). Their
sizes are served at /metrics (``callbridge_memory_entries`` and ``callbridge_memory_limit``, one
series per structure, never per call), and the suite checks the per-call ones are empty once
every call has ended.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from bridge.app_keys import (
    AGENT_CONNECTOR,
    CARRIER,
    DISPATCHER,
    PLACED_CALLS,
    SANDBOX_AGENT,
    SCHEDULER,
)
from bridge.sandbox import geography
from campaigns import windows

Sizes = dict[str, tuple[int, int | None]]

# Structures that hold one entry per live call (or per call being set up) and nothing once
# every call has ended: what the suite's soak test requires to be empty.
PER_CALL = (
    "placed_calls",
    "dispatcher_dials",
    "agent_conversations_pending",
    "sandbox_live_calls",
    "sandbox_streams",
    "sandbox_store_queue",
)


def _cache(function: Any) -> tuple[int, int | None]:
    info = function.cache_info()
    return info.currsize, info.maxsize


def sizes(app: web.Application) -> Sizes:
    """Every watched structure of this process: name -> (entries, bound or None)."""
    found: Sizes = {
        "placed_calls": (len(app[PLACED_CALLS]), None),
        "cache_time_zones": _cache(windows.zone),
        "cache_sandbox_places": _cache(geography.place_of),
    }
    dispatcher = app.get(DISPATCHER)
    if dispatcher is not None:
        found["dispatcher_dials"] = (dispatcher.in_flight, None)
    scheduler = app.get(SCHEDULER)
    if scheduler is not None:
        found["scheduler_jobs"] = (scheduler.job_count, None)
    connector = app.get(AGENT_CONNECTOR)
    if connector is not None:
        found["agent_conversations_pending"] = (connector.pending, None)
    for key in (CARRIER, SANDBOX_AGENT):
        holder = app.get(key)
        if holder is not None:
            found.update(holder.memory())
    return found


def per_call(app: web.Application) -> dict[str, int]:
    """The per-call structures and their entries (zero for each once no call is live)."""
    every = sizes(app)
    return {name: every[name][0] for name in PER_CALL if name in every}


def watcher(app: web.Application) -> Callable[[], Sizes]:
    return lambda: sizes(app)
