"""The sandbox's injected faults, seen through the real twilio SDK and a signature-checking
receiver: refusals, creates whose answer never comes, and misbehaving callbacks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from twilio.base.exceptions import TwilioRestException

from bridge.fault_plan import Faults
from bridge.sandbox.carrier import SandboxCarrier
from bridge.sandbox.faults import CreateFault, FaultInjector
from bridge.settings import SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN
from campaigns.db import make_engine
from tests.test_sandbox_carrier import HUMAN, Harness, Receiver, eventually

ALL_EVENTS = ["initiated", "ringing", "answered", "completed"]


def test_faults_parse_from_one_setting() -> None:
    faults = Faults.parse("seed=7, rate_limit=0.1,callback_drop=0.05,hang_seconds=2")
    assert (faults.seed, faults.rate_limit, faults.callback_drop, faults.hang_seconds) == (
        7,
        0.1,
        0.05,
        2.0,
    )
    assert Faults.parse("") == Faults() and not Faults().any
    with pytest.raises(ValueError, match="unknown sandbox fault"):
        Faults.parse("rate_limits=0.1")
    with pytest.raises(ValueError, match="probability"):
        Faults.parse("callback_drop=1.5")


def test_fault_draws_follow_the_seed_and_the_probabilities() -> None:
    faults = Faults(seed=3, rate_limit=0.1, server_error=0.05, create_timeout=0.02)
    a, b = FaultInjector(faults), FaultInjector(faults)
    draws = [a.create_fault() for _ in range(20_000)]
    assert draws == [b.create_fault() for _ in range(20_000)]
    share = {fault: draws.count(fault) / len(draws) for fault in CreateFault}
    assert share[CreateFault.RATE_LIMIT] == pytest.approx(0.10, abs=0.01)
    assert share[CreateFault.SERVER_ERROR] == pytest.approx(0.05, abs=0.01)
    assert share[CreateFault.CREATE_TIMEOUT] == pytest.approx(0.02, abs=0.005)


MakeFaulty = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def faulty(aiohttp_server: Any, database_url: str) -> AsyncIterator[MakeFaulty]:
    made: list[Harness] = []

    async def make(**faults: Any) -> Harness:
        engine = make_engine(database_url)
        carrier = SandboxCarrier(
            engine,
            account_sid=SANDBOX_ACCOUNT_SID,
            auth_token=SANDBOX_AUTH_TOKEN,
            ring_seconds=0.05,
            talk_seconds=0.05,
            callback_retry_delay=0.01,
            faults=Faults(**faults),
        )
        receiver = Receiver(SANDBOX_AUTH_TOKEN)
        app = web.Application()
        receiver.install(app)
        app.add_subapp("/sandbox", carrier.app())

        async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
            await carrier.start()
            yield
            await carrier.close()
            await engine.dispose()

        app.cleanup_ctx.append(lifecycle)
        harness = Harness(await aiohttp_server(app), carrier, receiver, [])
        made.append(harness)
        return harness

    yield make
    for harness in made:
        for client in harness.clients:
            await client.http_client.close()
        assert harness.receiver.bad_signatures == []


@pytest.mark.parametrize(
    ("fault", "status", "code"), [("rate_limit", 429, 20429), ("server_error", 500, 20500)]
)
async def test_refused_creates_create_nothing(
    faulty: MakeFaulty, fault: str, status: int, code: int
) -> None:
    harness = await faulty(**{fault: 1.0})
    with pytest.raises(TwilioRestException) as refused:
        await harness.dial(HUMAN)
    assert (refused.value.status, refused.value.code) == (status, code)
    assert await harness.inspect() == []


async def test_a_timed_out_create_still_places_the_call(faulty: MakeFaulty) -> None:
    harness = await faulty(create_timeout=1.0, hang_seconds=3.0)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(harness.dial(HUMAN), 0.5)
    # The client never learnt the sid, but the call exists and runs to its end.
    calls = await eventually(harness.inspect)
    assert [call["to"] for call in calls] == [HUMAN]
    listed = await harness.client().calls.list_async(to=HUMAN)
    assert [call.sid for call in listed] == [calls[0]["sid"]]
    await harness.ended(calls[0]["sid"])


async def test_dropped_callbacks_are_never_sent(faulty: MakeFaulty) -> None:
    harness = await faulty(callback_drop=1.0)
    created = await harness.dial(HUMAN, status_callback_event=ALL_EVENTS)

    async def all_dropped() -> bool:
        cbs = await harness.inspect(f"/sandbox/calls/{created.sid}/callbacks")
        return len(cbs) == 4 and {cb["state"] for cb in cbs} == {"dropped"}

    await eventually(all_dropped, within=20)
    assert (await harness.record(created.sid))["status"] == "completed"
    assert harness.receiver.of("status", created.sid) == []


async def test_duplicated_callbacks_arrive_twice_with_one_idempotency_token(
    faulty: MakeFaulty,
) -> None:
    harness = await faulty(callback_duplicate=1.0)
    created = await harness.dial(HUMAN, status_callback_event=ALL_EVENTS)
    await eventually(lambda: len(harness.receiver.of("status", created.sid)) == 8, within=20)
    hits = [h for h in harness.receiver.hits if h.kind == "status"]
    assert [h.params["SequenceNumber"] for h in hits] == ["0", "0", "1", "1", "2", "2", "3", "3"]
    tokens = [h.headers["I-Twilio-Idempotency-Token"] for h in hits]
    assert tokens[0] == tokens[1] and tokens[0] != tokens[2]


async def test_reordered_callbacks_arrive_out_of_sequence(faulty: MakeFaulty) -> None:
    harness = await faulty(callback_reorder=1.0)
    created = await harness.dial(HUMAN, status_callback_event=ALL_EVENTS)
    await eventually(lambda: len(harness.receiver.of("status", created.sid)) == 4, within=20)
    order = [p["SequenceNumber"] for p in harness.receiver.of("status", created.sid)]
    assert sorted(order) == ["0", "1", "2", "3"] and order != sorted(order)
