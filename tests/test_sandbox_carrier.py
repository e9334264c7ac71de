"""The sandbox carrier against the real twilio SDK, with an application stand-in that checks
every request's X-Twilio-Signature and records what it receives."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from bridge.sandbox.carrier import SandboxCarrier
from bridge.sandbox.number_table import OUTCOME_TABLE, planned_outcome
from bridge.sandbox.store import ensure_schema
from bridge.settings import SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN
from campaigns.clock import utcnow
from campaigns.db import make_engine
from tests.conftest import eventually

FROM = "+15005550006"
HUMAN = "+14155550100"
VOICEMAIL = "+14155550163"
TERMINAL = {"completed", "busy", "no-answer", "failed", "canceled"}
# Keeps the answered call open without a Media Stream (the stream side has tests of its own).
TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response><Pause length="60"/></Response>'


@dataclass
class Hit:
    kind: str
    method: str
    url: str
    params: dict[str, str]
    headers: dict[str, str]
    answered: int


@dataclass
class Receiver:
    """The application's side: TwiML, status and AMD endpoints that verify signatures."""

    token: str
    hits: list[Hit] = field(default_factory=list)
    bad_signatures: list[str] = field(default_factory=list)
    fail_times: dict[str, int] = field(default_factory=dict)  # kind -> 503s still to answer
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    def install(self, app: web.Application) -> None:
        app.router.add_route("*", "/hooks/{kind}", self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        url = str(request.url)
        form = dict(await request.post()) if request.method == "POST" else {}
        signature = request.headers.get("X-Twilio-Signature", "")
        if not RequestValidator(self.token).validate(url, form, signature):
            self.bad_signatures.append(url)
            return web.Response(status=403)
        if request.query.get("hold"):
            await self.gate.wait()
        params = {str(k): str(v) for k, v in form.items()} or {
            k: v for k, v in request.query.items() if k not in ("attempt", "hold")
        }
        answer = 204
        if self.fail_times.get(kind, 0) > 0:
            self.fail_times[kind] -= 1
            answer = 503
        self.hits.append(Hit(kind, request.method, url, params, dict(request.headers), answer))
        if answer != 204:
            return web.Response(status=answer)
        if kind == "twiml":
            return web.Response(text=TWIML, content_type="text/xml")
        return web.Response(status=204)

    def of(self, kind: str, sid: str, *, delivered_only: bool = True) -> list[dict[str, str]]:
        return [
            hit.params
            for hit in self.hits
            if hit.kind == kind
            and hit.params.get("CallSid") == sid
            and (hit.answered < 300 or not delivered_only)
        ]

    def statuses(self, sid: str) -> list[str]:
        return [params["CallStatus"] for params in self.of("status", sid)]

    def terminal(self, sid: str) -> dict[str, str] | None:
        ends = [p for p in self.of("status", sid) if p["CallStatus"] in TERMINAL]
        return ends[-1] if ends else None


@dataclass
class Harness:
    server: TestServer
    carrier: SandboxCarrier
    receiver: Receiver
    clients: list[Client]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def hook(self, kind: str, **query: str) -> str:
        return f"{self.base}/hooks/{kind}" + (f"?{urlencode(query)}" if query else "")

    def client(self, token: str = SANDBOX_AUTH_TOKEN) -> Client:
        client = Client(
            SANDBOX_ACCOUNT_SID,
            token,
            http_client=AsyncTwilioHttpClient(),
            environment={"X": "1"},
        )
        client.api.base_url = f"{self.base}/sandbox"
        self.clients.append(client)
        return client

    async def dial(self, to: str, **kwargs: Any) -> Any:
        kwargs.setdefault("url", self.hook("twiml", attempt="att_1"))
        kwargs.setdefault("status_callback", self.hook("status", attempt="att_1"))
        return await self.client().calls.create_async(to=to, from_=FROM, **kwargs)

    async def inspect(self, path: str = "/sandbox/calls") -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.base}{path}") as response,
        ):
            assert response.status == 200
            return await response.json()

    async def record(self, sid: str) -> dict[str, Any]:
        return next(call for call in await self.inspect() if call["sid"] == sid)

    async def ended(self, sid: str) -> dict[str, str]:
        return await eventually(lambda: self.receiver.terminal(sid))


MakeHarness = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_harness(aiohttp_server: Any, database_url: str) -> AsyncIterator[MakeHarness]:
    """Builds apps with a carrier mounted under /sandbox; all of a test's share one database
    (conftest's `database_url`: a SQLite file, or PostgreSQL when configured)."""
    made: list[Harness] = []

    async def make(*, ring: float = 0.0, talk: float = 0.0, start: bool = True) -> Harness:
        engine = make_engine(database_url)
        carrier = SandboxCarrier(
            engine,
            account_sid=SANDBOX_ACCOUNT_SID,
            auth_token=SANDBOX_AUTH_TOKEN,
            ring_seconds=ring,
            talk_seconds=talk,
            callback_retry_delay=0.01,
        )
        receiver = Receiver(SANDBOX_AUTH_TOKEN)
        app = web.Application()
        receiver.install(app)
        app.add_subapp("/sandbox", carrier.app())

        async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
            if start:
                await carrier.start()
            else:
                await ensure_schema(engine)
            yield
            receiver.gate.set()
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


@pytest.fixture
async def harness(make_harness: MakeHarness) -> Harness:
    return await make_harness()


# ---------------------------------------------------------------------------- the outcome table


def test_outcome_table_covers_every_suffix_exactly_once() -> None:
    for suffix in range(100):
        assert sum(rule.covers(suffix) for rule in OUTCOME_TABLE) == 1, suffix


@pytest.mark.parametrize(
    ("number", "by_attempt"),
    [
        ("+14155550100", ["human", "human"]),
        ("+14155550159", ["human"]),
        ("+14155550160", ["voicemail", "voicemail"]),
        ("+14155550179", ["no-answer"]),
        ("+14155550180", ["busy"]),
        ("+14155550189", ["failed"]),
        ("+14155550190", ["busy", "human", "human"]),
        ("+14155550199", ["no-answer", "no-answer", "voicemail", "voicemail"]),
    ],
)
def test_planned_outcome_by_suffix_and_attempt(number: str, by_attempt: list[str]) -> None:
    assert [planned_outcome(number, n).name for n in range(1, len(by_attempt) + 1)] == by_attempt


# ---------------------------------------------------------------------------- one call end to end


async def test_human_answer_reports_every_event_in_order(harness: Harness) -> None:
    created = await harness.dial(
        HUMAN,
        status_callback_event=["initiated", "ringing", "answered", "completed"],
        machine_detection="DetectMessageEnd",
        async_amd="true",
        async_amd_status_callback=harness.hook("amd", attempt="att_1"),
    )
    assert re.fullmatch(r"CA[0-9a-f]{32}", created.sid)
    assert created.status == "queued"
    assert created.start_time is None and created.answered_by is None
    assert created.direction == "outbound-api" and created.api_version == "2010-04-01"
    assert created.to == HUMAN and created.to_formatted == "(415) 555-0100"
    assert created.uri == f"/2010-04-01/Accounts/{SANDBOX_ACCOUNT_SID}/Calls/{created.sid}.json"

    end = await harness.ended(created.sid)
    received = harness.receiver.of("status", created.sid)
    assert [p["CallStatus"] for p in received] == [
        "initiated",
        "ringing",
        "in-progress",
        "completed",
    ]
    assert [p["SequenceNumber"] for p in received] == ["0", "1", "2", "3"]
    for params in received:
        assert params["AccountSid"] == SANDBOX_ACCOUNT_SID
        assert params["From"] == FROM and params["To"] == HUMAN
        assert params["Direction"] == "outbound-api" and params["ApiVersion"] == "2010-04-01"
        assert params["CallbackSource"] == "call-progress-events"
        assert parsedate_to_datetime(params["Timestamp"]).tzinfo is not None
    assert end["SipResponseCode"] == "200" and int(end["CallDuration"]) >= 1
    assert "ErrorCode" not in end

    kinds = [hit.kind for hit in harness.receiver.hits if hit.params["CallSid"] == created.sid]
    assert kinds.index("twiml") < kinds.index("amd")
    (twiml,) = harness.receiver.of("twiml", created.sid)
    assert twiml["CallStatus"] == "in-progress" and "AnsweredBy" not in twiml
    (amd,) = harness.receiver.of("amd", created.sid)
    assert amd["AnsweredBy"] == "human" and amd["MachineDetectionDuration"].isdigit()

    fetched = await harness.client().calls(created.sid).fetch_async()
    assert (fetched.status, fetched.answered_by) == ("completed", "human")
    assert fetched.duration == end["CallDuration"] and fetched.end_time is not None
    record = await harness.record(created.sid)
    assert record["attempt_number"] == 1 and record["answered_at"] is not None
    assert re.search(r"T\d\d:\d\d:\d\d\.\d{6}\+00:00$", record["created_at"])


@pytest.mark.parametrize(
    ("mode", "answered_by"), [("DetectMessageEnd", "machine_end_beep"), ("Enable", "machine_start")]
)
async def test_voicemail_is_reported_by_async_amd(
    harness: Harness, mode: str, answered_by: str
) -> None:
    created = await harness.dial(
        VOICEMAIL,
        machine_detection=mode,
        async_amd="true",
        async_amd_status_callback=harness.hook("amd"),
    )
    end = await harness.ended(created.sid)
    assert end["CallStatus"] == "completed"
    (amd,) = await eventually(lambda: harness.receiver.of("amd", created.sid))
    assert amd["AnsweredBy"] == answered_by
    fetched = await harness.client().calls(created.sid).fetch_async()
    assert fetched.answered_by == answered_by


async def test_synchronous_amd_puts_answered_by_on_the_twiml_request(harness: Harness) -> None:
    created = await harness.dial(VOICEMAIL, machine_detection="Enable")
    await harness.ended(created.sid)
    (twiml,) = harness.receiver.of("twiml", created.sid)
    assert twiml["AnsweredBy"] == "machine_start"
    # With how long detection took, in milliseconds, as with the asynchronous callback.
    assert twiml["MachineDetectionDuration"] == "4120"
    assert harness.receiver.of("amd", created.sid) == []


@pytest.mark.parametrize(
    ("to", "events", "sip", "error_code"),
    [
        ("+14155550175", ["initiated", "ringing", "no-answer"], "487", None),
        ("+14155550181", ["initiated", "ringing", "busy"], "486", None),
        ("+14155550186", ["initiated", "failed"], "500", "31005"),
    ],
)
async def test_unanswered_outcomes(
    harness: Harness, to: str, events: list[str], sip: str, error_code: str | None
) -> None:
    created = await harness.dial(
        to,
        status_callback_event=["initiated", "ringing", "answered", "completed"],
        machine_detection="Enable",
        async_amd="true",
        async_amd_status_callback=harness.hook("amd"),
    )
    end = await harness.ended(created.sid)
    assert harness.receiver.statuses(created.sid) == events
    assert end["CallDuration"] == "0" and end["SipResponseCode"] == sip
    assert end.get("ErrorCode") == error_code
    assert harness.receiver.of("twiml", created.sid) == []
    assert harness.receiver.of("amd", created.sid) == []
    fetched = await harness.client().calls(created.sid).fetch_async()
    assert fetched.status == events[-1] and fetched.answered_by is None


@pytest.mark.parametrize(
    ("to", "expected"),
    [
        ("+14155550192", [("busy", None), ("completed", "human"), ("completed", "human")]),
        (
            "+14155550197",
            [("no-answer", None), ("no-answer", None), ("completed", "machine_start")],
        ),
    ],
)
async def test_outcomes_change_with_the_attempt_number(
    harness: Harness, to: str, expected: list[tuple[str, str | None]]
) -> None:
    seen = []
    for _ in expected:
        created = await harness.dial(
            to,
            machine_detection="Enable",
            async_amd="true",
            async_amd_status_callback=harness.hook("amd"),
        )
        end = await harness.ended(created.sid)
        fetched = await harness.client().calls(created.sid).fetch_async()
        seen.append((end["CallStatus"], fetched.answered_by))
    assert seen == expected
    assert [call["attempt_number"] for call in await harness.inspect()] == [1, 2, 3]


async def test_without_status_callback_event_only_the_end_is_reported(harness: Harness) -> None:
    created = await harness.dial(HUMAN)
    end = await harness.ended(created.sid)
    assert harness.receiver.statuses(created.sid) == ["completed"]
    assert end["SequenceNumber"] == "0"


async def test_status_callback_by_get_is_signed_over_its_query(harness: Harness) -> None:
    created = await harness.dial(HUMAN, status_callback_method="GET")
    end = await harness.ended(created.sid)
    (hit,) = [h for h in harness.receiver.hits if h.kind == "status"]
    assert hit.method == "GET" and "CallStatus=completed" in hit.url
    assert end["SequenceNumber"] == "0"


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"to": "+1415555010"}, 21211),
        ({"to": "+15551234567"}, 21211),
        ({"to": ""}, 21201),
        ({"from_": ""}, 21213),
        ({"url": None}, 21205),
        ({"url": "not a url"}, 21205),
        ({"timeout": 0}, 21208),
    ],
)
async def test_invalid_create_requests_fail_like_twilio(
    harness: Harness, overrides: dict[str, Any], code: int
) -> None:
    kwargs: dict[str, Any] = {"to": HUMAN, "from_": FROM, "url": harness.hook("twiml")}
    kwargs.update(overrides)
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    with pytest.raises(TwilioRestException) as raised:
        await harness.client().calls.create_async(**kwargs)
    assert (raised.value.status, raised.value.code) == (400, code)
    assert await harness.inspect() == []


async def test_wrong_credentials_are_refused(harness: Harness) -> None:
    intruder = harness.client(token="not-the-token")
    with pytest.raises(TwilioRestException) as raised:
        await intruder.calls.create_async(to=HUMAN, from_=FROM, url=harness.hook("twiml"))
    assert (raised.value.status, raised.value.code) == (401, 20003)
    with pytest.raises(TwilioException):
        await intruder.calls.list_async()
    url = f"{harness.base}/sandbox/2010-04-01/Accounts/{SANDBOX_ACCOUNT_SID}/Calls.json"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 401
        assert (await response.json())["code"] == 20003
    assert await harness.inspect() == []


async def test_fetching_an_unknown_call_is_a_twilio_404(harness: Harness) -> None:
    with pytest.raises(TwilioRestException) as raised:
        await harness.client().calls("CA" + "f" * 32).fetch_async()
    assert (raised.value.status, raised.value.code) == (404, 20404)


# ---------------------------------------------------------------------------- listing


async def test_list_by_to_through_the_sdk(harness: Harness) -> None:
    other = "+14155550101"
    before = utcnow() - timedelta(minutes=1)
    first = await harness.dial(HUMAN)
    second = await harness.dial(HUMAN)
    await harness.dial(other)
    client = harness.client()

    listed = await client.calls.list_async(to=HUMAN)
    assert [call.sid for call in listed] == [second.sid, first.sid]  # newest first
    paged = await client.calls.list_async(to=HUMAN, page_size=1)
    assert [call.sid for call in paged] == [second.sid, first.sid]
    assert len(await client.calls.list_async(start_time_after=before)) == 3
    assert await client.calls.list_async(start_time_before=before - timedelta(days=2)) == []

    await harness.ended(first.sid)
    await harness.ended(second.sid)
    completed = await client.calls.list_async(to=HUMAN, status="completed")
    assert {call.sid for call in completed} == {first.sid, second.sid}
    assert await client.calls.list_async(to=HUMAN, status="busy") == []


async def test_inspection_log_lists_every_call_oldest_first(harness: Harness) -> None:
    sids = [(await harness.dial(number)).sid for number in (HUMAN, VOICEMAIL, HUMAN)]
    log = await harness.inspect()
    assert [call["sid"] for call in log] == sids
    assert [call["attempt_number"] for call in log] == [1, 1, 2]
    for call in log:
        assert {"sid", "to", "from", "url", "status_callback", "status", "answered_by"} <= set(call)
        assert {"created_at", "attempt_number", "duration", "start_time", "end_time"} <= set(call)
        assert "answered_at" in call


# ---------------------------------------------------------------------------- hanging up


async def test_hanging_up_a_ringing_call_cancels_it(make_harness: MakeHarness) -> None:
    harness = await make_harness(ring=30.0)
    created = await harness.dial(HUMAN, status_callback_event=["ringing", "completed"])
    await eventually(lambda: harness.receiver.statuses(created.sid) == ["ringing"])
    client = harness.client()

    updated = await client.calls(created.sid).update_async(status="completed")
    assert updated.status == "canceled"
    end = await harness.ended(created.sid)
    assert (end["CallStatus"], end["SipResponseCode"], end["CallDuration"]) == (
        "canceled",
        "487",
        "0",
    )
    with pytest.raises(TwilioRestException) as raised:
        await client.calls(created.sid).update_async(status="completed")
    assert raised.value.code == 21220


async def test_hanging_up_an_answered_call_completes_it(make_harness: MakeHarness) -> None:
    harness = await make_harness(talk=30.0)
    created = await harness.dial(HUMAN, status_callback_event=["answered", "completed"])
    await eventually(lambda: harness.receiver.statuses(created.sid) == ["in-progress"])
    client = harness.client()

    unchanged = await client.calls(created.sid).update_async(status="canceled")
    assert unchanged.status == "in-progress"  # canceling an answered call has no effect
    hung_up = await client.calls(created.sid).update_async(status="completed")
    assert hung_up.status == "completed" and int(hung_up.duration) >= 1
    end = await harness.ended(created.sid)
    assert (end["CallStatus"], end["SipResponseCode"]) == ("completed", "200")


async def test_canceling_a_queued_call_fires_no_callbacks(make_harness: MakeHarness) -> None:
    harness = await make_harness(start=False)
    created = await harness.dial(HUMAN, status_callback_event=["initiated", "completed"])
    updated = await harness.client().calls(created.sid).update_async(status="canceled")
    assert updated.status == "canceled"

    await harness.carrier.start()
    assert await harness.inspect(f"/sandbox/calls/{created.sid}/callbacks") == []
    assert (await harness.record(created.sid))["status"] == "canceled"
    assert harness.receiver.hits == []


# ---------------------------------------------------------------------------- delivery


async def test_a_failed_callback_is_retried_once(harness: Harness) -> None:
    harness.receiver.fail_times["status"] = 1
    created = await harness.dial(HUMAN)
    await harness.ended(created.sid)
    attempts = [h for h in harness.receiver.hits if h.kind == "status"]
    assert [h.answered for h in attempts] == [503, 204]
    assert attempts[0].params == attempts[1].params
    tokens = {h.headers["I-Twilio-Idempotency-Token"] for h in attempts}
    assert len(tokens) == 1


async def test_a_callback_failing_twice_is_given_up(harness: Harness) -> None:
    harness.receiver.fail_times["status"] = 5
    created = await harness.dial(HUMAN)
    path = f"/sandbox/calls/{created.sid}/callbacks"

    async def given_up() -> bool:
        return [cb["state"] for cb in await harness.inspect(path)] == ["failed"]

    await eventually(given_up)
    assert [h.answered for h in harness.receiver.hits if h.kind == "status"] == [503, 503]
    assert (await harness.record(created.sid))["status"] == "completed"


async def test_a_slow_webhook_does_not_hold_up_other_calls(harness: Harness) -> None:
    stuck = await harness.dial(HUMAN, status_callback=harness.hook("status", hold="1"))
    free = await harness.dial("+14155550102")
    await harness.ended(free.sid)

    async def stuck_call_ended() -> bool:
        return (await harness.record(stuck.sid))["status"] == "completed"

    await eventually(stuck_call_ended)  # the call's own timeline went on meanwhile
    assert harness.receiver.terminal(stuck.sid) is None
    harness.receiver.gate.set()
    await harness.ended(stuck.sid)


async def test_many_calls_run_in_parallel(make_harness: MakeHarness) -> None:
    harness = await make_harness(ring=30.0)
    numbers = [f"+1415555{n:04d}" for n in range(100, 120)]
    created = await asyncio.gather(*(harness.dial(number) for number in numbers))

    async def all_ringing_at_once() -> bool:
        log = await harness.inspect()
        return [call["status"] for call in log] == ["ringing"] * len(numbers)

    # Calls simulated one after another could never all be ringing together.
    await eventually(all_ringing_at_once)
    assert {call["sid"] for call in await harness.inspect()} == {call.sid for call in created}


# ---------------------------------------------------------------------------- restarts


async def test_log_survives_restart_and_unfinished_calls_resume(
    make_harness: MakeHarness,
) -> None:
    first = await make_harness(ring=30.0)
    created = await first.dial(
        HUMAN, status_callback_event=["initiated", "ringing", "answered", "completed"]
    )
    await eventually(lambda: "ringing" in first.receiver.statuses(created.sid))
    await first.carrier.close()  # the service goes away mid-ring

    second = await make_harness(ring=0.0, talk=0.0)
    end = await first.ended(created.sid)  # callbacks still go to the URLs given at create
    assert end["CallStatus"] == "completed"
    by_sequence = {
        p["SequenceNumber"]: p["CallStatus"] for p in first.receiver.of("status", created.sid)
    }
    assert by_sequence == {
        "0": "initiated",
        "1": "ringing",
        "2": "in-progress",
        "3": "completed",
    }
    assert len(first.receiver.of("twiml", created.sid)) == 1

    record = await second.record(created.sid)
    assert (record["status"], record["attempt_number"]) == ("completed", 1)
    again = await second.dial(HUMAN)
    assert (await second.record(again.sid))["attempt_number"] == 2
    fetched = await second.client().calls(created.sid).fetch_async()
    assert fetched.status == "completed"
