"""Steady for weeks: after thousands of calls, the service holds nothing per call that ended.

Each in-memory structure that gains an entry per call (the calls this node placed, dials in
flight, conversations waiting for their media stream, the sandbox's live calls and streams) must
lose it when the call ends, and the sandbox's inspection records and journals must keep no more
than their configured bounds. A leak of one small entry per call is invisible in a short test's
memory figures, so the structures themselves are counted (as /metrics reports them).
"""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bridge.app import create_app
from bridge.fault_plan import Faults
from bridge.media.connector import PENDING_TTL_SECONDS
from bridge.ops import memory
from bridge.settings import Settings
from campaigns.models import AttemptStatus
from tests.campaign_flow import contacts_csv
from tests.cluster import many_numbers
from tests.conftest import eventually
from tests.service import API_KEY, free_port

CALLS = 1000
# Sandbox outcomes by the last two digits (README): 00-01 answered (TwiML, media stream, agent
# conversation), 80-84 busy, 85-89 failed. One call in six answers: every per-call structure is
# used, while the run stays quick.
LAST_DIGITS = frozenset([0, 1, *range(80, 90)])
RECORDS = 40
JOURNAL = 100
HEADERS = {"Authorization": f"Bearer {API_KEY}"}


def phones(count: int) -> list[str]:
    per_hundred = len(LAST_DIGITS)
    chosen = [p for p in many_numbers(-(-count // per_hundred) * 100) if int(p[-2:]) in LAST_DIGITS]
    return chosen[:count]


async def serve(
    aiohttp_server: Any, aiohttp_client: Any, database_url: str, **settings: Any
) -> tuple[Any, Any]:
    """callbridge in this process with calls that ring and talk for no time: (app, client)."""
    port = free_port()
    app = create_app(
        Settings(
            database_url=database_url,
            port=port,
            api_keys=(API_KEY,),
            sandbox_ring_seconds=0.0,
            sandbox_talk_seconds=0.0,
            **settings,
        )
    )
    return app, await aiohttp_client(await aiohttp_server(app, port=port))


async def start_campaign(client: Any, numbers: list[str], *, concurrency: int) -> str:
    """A one-attempt campaign of ``numbers``, started; returns its id."""
    created = await client.post(
        "/api/v1/campaigns",
        headers=HEADERS,
        json={
            "name": "steady",
            "agent_id": "agent_steady",
            "from_number": "+15005550006",
            "max_attempts": 1,
            "concurrency": concurrency,
        },
    )
    assert created.status == 201, await created.text()
    campaign_id: str = (await created.json())["id"]
    uploaded = await client.post(
        f"/api/v1/campaigns/{campaign_id}/contacts",
        headers={**HEADERS, "Content-Type": "text/csv"},
        data=contacts_csv(numbers),
    )
    assert uploaded.status == 200, await uploaded.text()
    started = await client.post(f"/api/v1/campaigns/{campaign_id}/start", headers=HEADERS)
    assert started.status == 200, await started.text()
    return campaign_id


async def test_per_call_structures_are_empty_once_thousands_of_calls_have_ended(
    aiohttp_server: Any, aiohttp_client: Any, database_url: str
) -> None:
    app, client = await serve(
        aiohttp_server,
        aiohttp_client,
        database_url,
        sandbox_memory_records=RECORDS,
        sandbox_journal_entries=JOURNAL,
    )
    campaign_id = await start_campaign(client, phones(CALLS), concurrency=200)

    last: dict[str, Any] = {}

    async def completed() -> dict[str, Any] | None:
        response = await client.get(f"/api/v1/campaigns/{campaign_id}", headers=HEADERS)
        last.update(await response.json())
        return last if last["status"] == "completed" else None

    # A deadline for a stuck campaign, not a speed target (bench/ measures speed).
    try:
        done = await eventually(completed, within=300, what="the campaign to complete", every=0.1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last read: {last.get('counts')}") from None
    assert sum(done["counts"]["dispositions"].values()) == CALLS

    # The last calls' callbacks may still be on their way, and a conversation opened for a call
    # whose TwiML answer came too late (a loaded machine) waits for its media stream until
    # PENDING_TTL_SECONDS: give them that, not for ever.
    async def emptied() -> bool:
        return not any(memory.per_call(app).values())

    try:
        await eventually(
            emptied,
            within=PENDING_TTL_SECONDS + 15,
            what="every per-call structure to be empty",
            every=0.1,
        )
    except AssertionError:
        raise AssertionError(f"left behind after {CALLS} calls: {memory.per_call(app)}") from None

    scrape = await client.get("/metrics")
    entries: dict[str, float] = {}
    limits: dict[str, float] = {}
    for family in text_string_to_metric_families(await scrape.text()):
        for sample in family.samples:
            if sample.name == "callbridge_memory_entries":
                entries[sample.labels["structure"]] = sample.value
            elif sample.name == "callbridge_memory_limit":
                limits[sample.labels["structure"]] = sample.value
    # Every per-call structure is reported, and is empty; every bounded one is within bounds.
    assert {name: entries.get(name) for name in memory.PER_CALL} == dict.fromkeys(
        memory.PER_CALL, 0.0
    )
    assert limits["sandbox_agent_conversations"] == RECORDS
    over = {name: (entries[name], bound) for name, bound in limits.items() if entries[name] > bound}
    assert not over, f"beyond their bounds: {over}"
    # The sandbox did keep what it may: the newest calls' records, up to the bound.
    assert entries["sandbox_agent_conversations"] == RECORDS
    assert entries["sandbox_sent_journal"] == JOURNAL


async def test_a_create_the_provider_never_made_is_not_remembered_as_placed(
    aiohttp_server: Any, aiohttp_client: Any, database_url: str
) -> None:
    """A create answered 500 may have made a call, so the node remembers it as placed (a
    graceful stop waits for it) until reconciliation finds the provider never made it: then the
    attempt ends not placed, and the node forgets it; the contact is dialled again."""
    app, client = await serve(
        aiohttp_server,
        aiohttp_client,
        database_url,
        provider_timeout_seconds=0.5,
        housekeeping_seconds=0.2,
        # Seed 1's first create draw is under 0.5, its second above: one 500, then a call.
        sandbox_faults=Faults(seed=1, server_error=0.5),
    )
    campaign_id = await start_campaign(client, phones(1), concurrency=1)

    async def completed() -> bool:
        response = await client.get(f"/api/v1/campaigns/{campaign_id}", headers=HEADERS)
        return bool((await response.json())["status"] == "completed")

    await eventually(completed, within=60, what="the campaign to complete", every=0.1)
    listed = await client.get(f"/api/v1/attempts?campaign_id={campaign_id}", headers=HEADERS)
    statuses = sorted(a["status"] for a in await listed.json())
    assert statuses == ["completed", AttemptStatus.NOT_PLACED], statuses
    await eventually(
        lambda: not any(memory.per_call(app).values()),
        within=15,
        what="every per-call structure to be empty",
        every=0.1,
    )
