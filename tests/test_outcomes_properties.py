"""Callbacks arrive out of order and more than once: whatever the order and the repeats, the events
of a call leave its attempt with the result they give in the order they were sent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.telephony.twilio.statuses import answerer
from campaigns.call_updates import CallUpdate
from campaigns.models import Attempt, AttemptStatus
from campaigns.transitions import apply_update, outcome_of

DIALED_AT = datetime(2026, 5, 4, 15, 0, tzinfo=UTC)
CALL_ID = "CA" + "0" * 32

# What the attempt keeps of its call's events. Left out, on purpose: answered_at and ring_seconds,
# which come from the in-progress event and cannot be known when the final event overtakes it
# (the attempt then ends without an answer time, in any order that puts the final event first).
KEPT = (
    "status",
    "provider_call_id",
    "last_sequence",
    "answered_by",
    "answerer",
    "talk_seconds",
    "sip_response_code",
    "error_code",
    "error_message",
    "ended_at",
)


@dataclass(frozen=True)
class Call:
    """A call as the provider reports it: its status events in order, and an AMD verdict."""

    events: list[CallUpdate]


def status_event(
    sequence: int,
    status: str,
    **fields: object,
) -> CallUpdate:
    return CallUpdate(
        provider="twilio",
        provider_call_id=CALL_ID,
        kind="status",
        received_at=DIALED_AT + timedelta(seconds=5 * sequence + 1),
        status=status,
        sequence=sequence,
        **fields,  # type: ignore[arg-type]
    )


@st.composite
def calls(draw: st.DrawFn) -> Call:
    final = draw(
        st.sampled_from(
            [
                AttemptStatus.COMPLETED,
                AttemptStatus.BUSY,
                AttemptStatus.NO_ANSWER,
                AttemptStatus.FAILED,
                AttemptStatus.CANCELED,
            ]
        )
    )
    answered = final == AttemptStatus.COMPLETED
    answered_by = (
        draw(st.sampled_from(["human", "machine_end_beep", "machine_start", "fax", None]))
        if answered
        else None
    )
    path = [AttemptStatus.QUEUED, AttemptStatus.INITIATED, AttemptStatus.RINGING]
    path = path[: draw(st.integers(0, len(path)))]
    if answered:
        path.append(AttemptStatus.IN_PROGRESS)
    events = [status_event(i, status) for i, status in enumerate(path)]
    terminal: dict[str, object] = {"duration_seconds": draw(st.integers(0, 600))}
    if final == AttemptStatus.FAILED:
        terminal |= {"sip_response_code": 404, "error_code": "32009", "error_message": "not found"}
    elif final == AttemptStatus.BUSY:
        terminal |= {"sip_response_code": 486}
    if answered_by and draw(st.booleans()):
        # With asynchronous AMD, Twilio repeats the verdict on the final status callback.
        terminal["answered_by"] = answered_by
        terminal["answerer"] = answerer(answered_by)
    events.append(status_event(len(path), final, **terminal))
    if answered_by:
        verdict = CallUpdate(
            provider="twilio",
            provider_call_id=CALL_ID,
            kind="amd",
            received_at=DIALED_AT + timedelta(seconds=3),
            answered_by=answered_by,
            answerer=answerer(answered_by),
        )
        events.insert(draw(st.integers(0, len(events))), verdict)
    return Call(events)


def fold(events: list[CallUpdate]) -> dict[str, object]:
    attempt = Attempt(
        id="att_1",
        provider="twilio",
        status=AttemptStatus.DIALING,
        last_sequence=-1,
        dialed_at=DIALED_AT,
        provider_call_id=None,
    )
    for event in events:
        apply_update(attempt, event)
    return {name: getattr(attempt, name) for name in KEPT} | {"outcome": outcome_of(attempt)}


@settings(max_examples=400, deadline=None)
@given(call=calls(), data=st.data())
def test_any_order_and_any_repeats_give_the_in_order_result(call: Call, data: st.DataObject):
    """After every event delivered, the attempt is as if the events received so far had come in
    the order they were sent, once each: not only at the end, but at every step of the way."""
    shuffled = data.draw(st.permutations(call.events), label="order")
    repeats = data.draw(st.lists(st.sampled_from(call.events), max_size=6), label="repeats")
    delivered = list(shuffled)
    for repeat in repeats:
        delivered.insert(data.draw(st.integers(0, len(delivered)), label="where"), repeat)
    for received in range(1, len(delivered) + 1):
        so_far = {id(event) for event in delivered[:received]}
        sent_order = [event for event in call.events if id(event) in so_far]
        assert fold(delivered[:received]) == fold(sent_order), f"after {received} events"
    assert fold(delivered)["status"] in AttemptStatus.TERMINAL


@settings(max_examples=100, deadline=None)
@given(call=calls())
def test_a_final_status_is_never_left(call: Call):
    """Once an event has ended the attempt, no later event (a late ringing, say) reopens it."""
    terminal_first = sorted(call.events, key=lambda e: e.status not in AttemptStatus.TERMINAL)
    attempt = Attempt(id="att_1", status=AttemptStatus.DIALING, last_sequence=-1)
    statuses = []
    for event in terminal_first:
        apply_update(attempt, event)
        statuses.append(attempt.status)
    assert all(status == statuses[0] for status in statuses)
    assert statuses[0] in AttemptStatus.TERMINAL
