"""The call state machine: provider events in, attempt state out.

Provider callbacks arrive out of order and twice. Applying them is idempotent and monotonic:
a status only ever moves forward, and a terminal attempt never leaves its terminal state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from campaigns.models import Attempt, AttemptStatus, Disposition

_RANK = {
    AttemptStatus.DIALING: 0,
    AttemptStatus.QUEUED: 1,
    AttemptStatus.INITIATED: 2,
    AttemptStatus.RINGING: 3,
    AttemptStatus.IN_PROGRESS: 4,
}
_TERMINAL_RANK = 5

# AnsweredBy values that mean nobody picked up in person.
# The agent's own voicemail detection (its voicemail_detection tool) as an AnsweredBy value.
AGENT_VOICEMAIL = "voicemail_detection"

MACHINE_ANSWERS = frozenset(
    {
        "machine_start",
        "machine_end_beep",
        "machine_end_silence",
        "machine_end_other",
        "fax",
        AGENT_VOICEMAIL,
    }
)


@dataclass(frozen=True)
class CallUpdate:
    """One provider event, already parsed from its wire format."""

    provider: str
    provider_call_id: str
    kind: str  # "status" or "amd"
    received_at: datetime
    raw: dict[str, Any] = field(default_factory=dict)
    attempt_id: str | None = None
    status: str | None = None
    sequence: int | None = None
    answered_by: str | None = None
    duration_seconds: int | None = None
    sip_response_code: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    # What the agent's post-call report says about the conversation (None: not reported).
    conversation_id: str | None = None
    transcript: list[Any] | None = None
    transcript_summary: str | None = None
    call_successful: str | None = None
    data_collection: dict[str, Any] | None = None
    conversation_seconds: int | None = None
    # True when provider_call_id only stands in (a conversation id) for a call whose provider id
    # the reporter did not know: it keys the event, and is never taken as the attempt's call id.
    stand_in_call_id: bool = False

    @property
    def dedupe_key(self) -> str:
        if self.kind == "status":
            # Twilio numbers callbacks per call; the status guards against a missing number.
            return f"{self.provider_call_id}:status:{self.sequence}:{self.status}"
        return f"{self.provider_call_id}:{self.kind}"


def rank(status: str) -> int:
    return _TERMINAL_RANK if status in AttemptStatus.TERMINAL else _RANK.get(status, 0)


def outcome_of(attempt: Attempt) -> str | None:
    """The attempt's result in campaign terms, or None while the call is live."""
    status = attempt.status
    if status == AttemptStatus.COMPLETED:
        if attempt.answered_by in MACHINE_ANSWERS:
            return Disposition.VOICEMAIL
        return Disposition.ANSWERED
    if status == AttemptStatus.BUSY:
        return Disposition.BUSY
    if status == AttemptStatus.NO_ANSWER:
        return Disposition.NO_ANSWER
    if status in (AttemptStatus.FAILED, AttemptStatus.CANCELED):
        return Disposition.FAILED
    return None


def apply_update(attempt: Attempt, update: CallUpdate) -> bool:
    """Fold one event into the attempt. Returns True when the attempt's outcome changed."""
    before = outcome_of(attempt)
    if attempt.provider_call_id is None and not update.stand_in_call_id:
        # The callback can beat the create response (or the create response was lost in a crash).
        attempt.provider_call_id = update.provider_call_id
    if update.answered_by:
        attempt.answered_by = update.answered_by
    # Status callbacks carry a status; so do agent reports when the agent placed the call itself.
    if update.status:
        _apply_status(attempt, update)
    _apply_conversation(attempt, update)
    return outcome_of(attempt) != before


def _apply_conversation(attempt: Attempt, update: CallUpdate) -> None:
    if update.conversation_id and attempt.conversation_id is None:
        attempt.conversation_id = update.conversation_id
    if update.transcript is not None:
        attempt.transcript = update.transcript
    if update.transcript_summary is not None:
        attempt.transcript_summary = update.transcript_summary
    if update.call_successful is not None:
        attempt.call_successful = update.call_successful
    if update.data_collection is not None:
        attempt.data_collection = update.data_collection
    if update.conversation_seconds is not None:
        attempt.conversation_seconds = update.conversation_seconds


def _apply_status(attempt: Attempt, update: CallUpdate) -> None:
    assert update.status is not None
    if update.sequence is not None and update.sequence > attempt.last_sequence:
        attempt.last_sequence = update.sequence
    new_rank = rank(update.status)
    if attempt.status in AttemptStatus.TERMINAL or new_rank <= rank(attempt.status):
        _fill_terminal_details(attempt, update)
        return
    if update.status == AttemptStatus.IN_PROGRESS:
        attempt.answered_at = update.received_at
    attempt.status = update.status
    if new_rank == _TERMINAL_RANK:
        attempt.ended_at = update.received_at
        _fill_terminal_details(attempt, update)


def _fill_terminal_details(attempt: Attempt, update: CallUpdate) -> None:
    """Durations and codes only travel on terminal events; a late duplicate may still carry them."""
    if update.status not in AttemptStatus.TERMINAL:
        return
    if update.duration_seconds is not None and attempt.talk_seconds is None:
        attempt.talk_seconds = update.duration_seconds
    if update.sip_response_code is not None and attempt.sip_response_code is None:
        attempt.sip_response_code = update.sip_response_code
    if update.error_code and attempt.error_code is None:
        attempt.error_code = update.error_code
        attempt.error_message = update.error_message
    if attempt.ring_seconds is None and attempt.dialed_at is not None:
        ring_end = attempt.answered_at or attempt.ended_at
        if ring_end is not None:
            attempt.ring_seconds = max(0, round((ring_end - attempt.dialed_at).total_seconds()))
